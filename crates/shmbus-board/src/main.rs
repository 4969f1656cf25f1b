//! The emulated-board scenario runner (being written).

mod hardening;

fn main() {
    let _ = hardening::scenarios();
}
