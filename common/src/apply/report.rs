//! What an unpack could not apply as the layers asked, gathered while applying and summarized
//! as warnings at the end.

use super::ROOTLESS_XATTR;
use std::collections::BTreeMap;

/// What could not be applied as the layers asked, for the caller to show as warnings.
#[derive(Debug, Default)]
pub struct Report {
    pub warnings: Vec<String>,
    /// A layer carried `./`: the destination took its attributes.
    pub root_entry: bool,
    /// In overlay format: directories made without an entry (see `apply::overlay`).
    pub implied: Vec<Vec<u8>>,
    /// In overlay format: the layer hides every lower path (`.wh..wh..opq` at its top).
    pub opaque_root: bool,
}

/// What went unapplied, summarized into [`Report::warnings`] at the end.
#[derive(Default)]
pub(super) struct Notes {
    pub(super) devices: Vec<String>,
    pub(super) owners: u64,
    /// xattrs outside `user.*` in an unprivileged run: count and first example.
    pub(super) xattrs_skipped: Option<(u64, String)>,
    /// Setting an xattr failed with ENOTSUP or EPERM: per error, count and first example.
    pub(super) xattr_failures: BTreeMap<String, (u64, String)>,
    pub(super) rootless_stripped: u64,
    /// In overlay format, xattrs in the overlay's namespace left out: count and first example.
    pub(super) overlay_reserved: Option<(u64, String)>,
}

impl Notes {
    pub(super) fn into_report(self, rootless: bool) -> Report {
        let mut warnings = Vec::new();
        if !self.devices.is_empty() {
            let shown: Vec<&str> = self.devices.iter().take(5).map(String::as_str).collect();
            let more = if self.devices.len() > 5 { ", …" } else { "" };
            warnings.push(format!(
                "{} device node(s) not created (needs root): {}{more}",
                self.devices.len(),
                shown.join(", ")
            ));
        }
        if self.owners > 0 && !rootless {
            warnings.push(format!(
                "owners not applied to {} entries (needs root; --rootless records them in {})",
                self.owners,
                String::from_utf8_lossy(ROOTLESS_XATTR)
            ));
        }
        if let Some((n, first)) = self.xattrs_skipped {
            warnings.push(format!(
                "{n} xattr(s) outside user.* not applied (needs root), first {first}"
            ));
        }
        for (err, (n, first)) in self.xattr_failures {
            warnings.push(format!("{n} xattr(s) could not be set ({err}), first {first}"));
        }
        if self.rootless_stripped > 0 {
            warnings.push(format!(
                "ignored {} {} xattr(s) carried by the layers",
                self.rootless_stripped,
                String::from_utf8_lossy(ROOTLESS_XATTR)
            ));
        }
        if let Some((n, first)) = self.overlay_reserved {
            warnings.push(format!(
                "{n} xattr(s) in overlayfs's namespace not applied (they would steer the mount), first {first}"
            ));
        }
        Report {
            warnings,
            ..Report::default()
        }
    }
}
