//! The dependency rule of the README's layout section, checked on the source itself: every
//! arrow between modules points one way (issue 12 item 4).

use std::path::{Path, PathBuf};

/// Which crate modules each module may name. A module not listed here may name anything
/// (the entry points: `main`, `app`, `config`, `web`, and `metrics`, which reads every part).
const ALLOWED: &[(&str, &[&str])] = &[
    // Leaves: they know no other module of ours.
    ("clock", &[]),
    ("codes", &[]),
    ("hours", &["codes"]),
    ("wareki", &[]),
    ("store", &["clock"]),
    // Domains.
    ("privacy", &["clock", "codes", "store", "wareki"]),
    ("calls", &["clock", "codes", "hours", "privacy", "store"]),
    (
        "booking",
        &[
            "clock", "codes", "hours", "calls", "privacy", "store", "wareki",
        ],
    ),
    // The hub names the privacy Actor of each screen: its pops are recorded (call.pop).
    (
        "hub",
        &["clock", "codes", "calls", "booking", "privacy", "store"],
    ),
    // The weekly share reads the slips and writes the shared date into the bookings.
    (
        "sharing",
        &["clock", "codes", "wareki", "booking", "privacy", "store"],
    ),
    // The SIP side publishes the calls domain's events and asks the leaf for the hours.
    ("sip", &["clock", "codes", "calls", "hours"]),
    // The dead-line alarm reads the hours and the call log's table, tells the screens through
    // the hub and mails through the sharing relay; the SIP facts come in through the app.
    ("alarm", &["clock", "hours", "hub", "sharing", "store"]),
    // Reports read the call log and the bookings, format dates for the city and record sends.
    (
        "reports",
        &[
            "clock", "codes", "hours", "wareki", "calls", "booking", "privacy", "store",
        ],
    ),
];

const MODULES: &[&str] = &[
    "alarm", "app", "booking", "calls", "clock", "codes", "config", "hours", "hub", "metrics",
    "privacy", "reports", "sharing", "sip", "store", "wareki", "web",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules `src` names as `crate::x` (comments and doc links included: a doc link
/// to another module is a dependency of the reader too).
fn named_modules(src: &str) -> Vec<&'static str> {
    MODULES
        .iter()
        .copied()
        .filter(|m| {
            let needle = format!("crate::{m}");
            src.match_indices(&needle).any(|(i, _)| {
                let next = src[i + needle.len()..].chars().next();
                !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .collect()
}

#[test]
fn dependencies_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (module, allowed) in ALLOWED {
        let mut files = Vec::new();
        let dir = root.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        let file = root.join(format!("{module}.rs"));
        if file.is_file() {
            files.push(file);
        }
        assert!(!files.is_empty(), "no source for module {module}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for used in named_modules(&text) {
                if used != *module && !allowed.contains(&used) {
                    violations.push(format!(
                        "{} names crate::{used}",
                        f.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependency rule broken (see README, Layout):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_rule_catches_a_wrong_arrow() {
    // The checker itself: a SIP file naming the store is found, a longer name is not.
    assert_eq!(named_modules("use crate::store::Db;"), ["store"]);
    assert!(named_modules("use crate::storeroom::X;").is_empty());
    assert_eq!(
        named_modules("use crate::calls::CallEvent; // crate::hub"),
        ["calls", "hub"]
    );
}
