# layerkit — build, demo, test, bench, man pages, install.
# `make test` installs the peer tools the tests run against (umoci, skopeo, a registry, …)
# when run as root and they are missing; as a normal user those tests skip, except with CI=true.

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
TOOLS := layer-diff layer-pack image-stack image-history image-prune
PEER_PACKAGES := umoci skopeo docker-registry podman buildah uidmap fuse-overlayfs pigz zstd mandoc jq debootstrap hyperfine time
PEER_COMMANDS := umoci skopeo docker-registry podman pigz zstd mandoc jq debootstrap hyperfine /usr/bin/time

.PHONY: all build demo test unit-test e2e-test peers bench man man-check install clean fuzz

all: build

build:
	$(CARGO) build --release --workspace --bins

# Installs the peer tools when root and any is missing; never prompts.
peers:
	@missing=""; for c in $(PEER_COMMANDS); do command -v $$c >/dev/null 2>&1 || [ -x $$c ] || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing peer tools (missing:$$missing)"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(PEER_PACKAGES); \
	  else \
	    echo "peer tools missing:$$missing — their tests will skip (run make test as root to install them)"; \
	  fi; \
	fi

demo: build
	bash demo/demo.sh

test: peers
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

bench: peers build
	bash bench/bench.sh

man:
	$(CARGO) run -q -p xtask -- man man

man-check:
	$(CARGO) run -q -p xtask -- man --check man

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	for t in $(TOOLS); do install -m 755 target/release/$$t $(DESTDIR)$(PREFIX)/bin/; done
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	$(CARGO) run -q -p xtask -- completions $(DESTDIR)$(PREFIX)/share

clean:
	$(CARGO) clean
