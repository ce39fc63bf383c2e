# layerkit — build, demo, test, bench, man pages, install.
# `make test` and `make demo` install what they run against (the peer tools: umoci, skopeo, a
# registry, the docker engine, …; busybox-static for the demo's containers) with apt-get when
# run as root and something is missing; as a normal user the peer tests skip visibly, except
# with CI=true where a missing peer fails.

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
TOOLS := layer-diff layer-pack image-stack image-history image-prune image-ls
PEER_PACKAGES := umoci skopeo docker-registry podman buildah uidmap fuse-overlayfs pigz zstd mandoc groff-base jq debootstrap hyperfine time openssl attr python3 docker.io busybox-static strace bsdutils tmux pv zsh fish
PEER_COMMANDS := umoci skopeo docker-registry podman pigz zstd mandoc groff jq debootstrap hyperfine /usr/bin/time openssl setfattr python3 /usr/bin/docker /usr/sbin/dockerd /bin/busybox strace script tmux pv zsh fish
DEMO_PACKAGES := busybox-static
DEMO_COMMANDS := /bin/busybox

.PHONY: all build demo demo-deps test peers bench man man-check completions install install-files clean fuzz

all: build

# The six tools, optimized: the binaries of the root package (xtask is a developer tool, not
# part of a release build).
build:
	$(CARGO) build --release $(addprefix --bin ,$(TOOLS))

# $(call ensure,COMMANDS,PACKAGES,WHAT): installs PACKAGES with apt-get when root and any of
# COMMANDS is missing; otherwise says what is missing and what will not run.
define ensure
	@missing=""; for c in $(1); do command -v $$c >/dev/null 2>&1 || [ -x $$c ] || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing (missing:$$missing)"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(2); \
	  else \
	    echo "missing:$$missing — $(3) (run make as root to install them)"; \
	  fi; \
	fi
endef

peers:
	$(call ensure,$(PEER_COMMANDS),$(PEER_PACKAGES),their tests skip)

demo-deps:
	$(call ensure,$(DEMO_COMMANDS),$(DEMO_PACKAGES),the demo needs them)

demo: demo-deps build
	bash demo/demo.sh

# Debug builds. The end-to-end tests (tests/tests.rs) are the root package's, so cargo builds the
# six binaries they run first; a plain `cargo test` does the same.
test: peers
	$(CARGO) test --workspace --no-fail-fast

# The fuzz targets of fuzz/ (cargo-fuzz, libFuzzer), each for FUZZ_SECONDS, from the committed
# seeds (fuzz/seeds.sh remakes them). cargo-fuzz passes nightly flags (-Zsanitizer=address);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the run. apply_root (the applier's chown, mknod and
# trusted.* paths) runs as root only, as CI does; as a normal user it is skipped with a notice.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := tar_changeset apply apply_root refs change layout
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build -O
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  if [ $$t = apply_root ] && [ "$$(id -u)" != 0 ]; then echo "SKIPPED: fuzz target apply_root needs root"; continue; fi; \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; \
	done

bench:
	@if [ ! -f bench/bench.sh ]; then echo "make bench: bench/bench.sh does not exist yet" >&2; exit 1; fi
	$(MAKE) build peers
	bash bench/bench.sh

# Regenerates man/*.1 from the tools' clap definitions; `make man-check` fails if one is stale.
man:
	$(CARGO) run -q -p xtask -- man man

man-check:
	$(CARGO) run -q -p xtask -- man --check man

# Regenerates completions/{bash,zsh,fish}/ from the tools' clap definitions (tests/man_pages.rs
# fails when one is stale).
completions:
	$(CARGO) run -q -p xtask -- completions completions

install: build
	$(MAKE) install-files

# What `make install` copies: the binaries from BIN (the release build: target/release/<tool>),
# the man pages and completions from the repository; tests/man_pages.rs runs it on the binaries
# under test.
BIN ?= target/release
SHARE = $(DESTDIR)$(PREFIX)/share
install-files:
	install -d $(DESTDIR)$(PREFIX)/bin $(SHARE)/man/man1 $(SHARE)/bash-completion/completions \
	  $(SHARE)/zsh/site-functions $(SHARE)/fish/vendor_completions.d
	for t in $(TOOLS); do install -m 755 $(BIN)/$$t $(DESTDIR)$(PREFIX)/bin/; done
	install -m 644 man/*.1 $(SHARE)/man/man1/
	install -m 644 completions/bash/* $(SHARE)/bash-completion/completions/
	install -m 644 completions/zsh/_* $(SHARE)/zsh/site-functions/
	install -m 644 completions/fish/*.fish $(SHARE)/fish/vendor_completions.d/

clean:
	$(CARGO) clean
