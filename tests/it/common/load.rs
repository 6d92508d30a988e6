//! A sipp call load (trunk → madoguchi → phone) and what the long-tier fault tests check
//! after it: sipp's own counts and the call log's rows (issue 16 item 7).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sqlx::Row;

use super::sipp;

/// The benchmark phone (answers at once, 200 retransmitted until the ACK), as a real phone
/// behaves on a lossy network: a BYE is taken even when the ACK before it was lost, and the
/// phone stays around after the BYE so a retransmitted BYE (its 200 lost) is answered again
/// (sipp re-sends its last answer to a retransmission only while the call lives).
pub fn lingering_phone(dir: &Path, linger_ms: u32) -> PathBuf {
    let base = std::fs::read_to_string(super::manifest_dir().join("scripts/sipp/bench-phone.xml"))
        .unwrap();
    let ack = "<recv request=\"ACK\"/>";
    assert!(base.contains(ack), "bench-phone.xml waits for the ACK");
    let base = base.replace(ack, "<recv request=\"ACK\" optional=\"true\"/>");
    let end = base.rfind("</scenario>").unwrap();
    let xml = format!(
        "{}  <pause milliseconds=\"{linger_ms}\"/>\n</scenario>\n",
        &base[..end]
    );
    sipp::custom(dir, "lingering-phone", &xml)
}

/// The last line of a sipp `-trace_stat` file in `dir` whose name starts with `stem`, by
/// column name.
pub fn sipp_stats(dir: &Path, stem: &str) -> HashMap<String, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with(stem) && n.ends_with(".csv")
        })
        .collect();
    files.sort();
    let file = files
        .last()
        .unwrap_or_else(|| panic!("no sipp statistics for {stem} in {}", dir.display()));
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(';').collect();
    let last: Vec<&str> = lines
        .next_back()
        .expect("a statistics row")
        .split(';')
        .collect();
    header
        .iter()
        .zip(last)
        .map(|(h, v)| (h.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A cumulative counter of [`sipp_stats`].
pub fn stat(stats: &HashMap<String, String>, name: &str) -> u64 {
    stats
        .get(name)
        .unwrap_or_else(|| panic!("sipp statistics have no {name}: {stats:?}"))
        .parse()
        .unwrap()
}

/// The call log's rows as (SIP Call-ID, end cause), read from the database itself.
pub async fn logged_calls(db: &madoguchi::store::Db) -> Vec<(String, Option<String>)> {
    sqlx::query("SELECT sip_call_id, end_cause FROM calls")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<Option<String>, _>(1)))
        .collect()
}

/// Call-IDs with more than one row (a call logged twice).
pub fn duplicates(rows: &[(String, Option<String>)]) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (id, _) in rows {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(id, _)| id.to_string())
        .collect()
}

/// The benchmark trunk with its BYE's 200 told apart from a retransmitted 200 to the INVITE
/// (sipp matches a response by code only): on a lossy network the 200 to the INVITE comes
/// again when the ACK was lost, and must not pass for the answer to the BYE.
pub fn lossy_trunk(dir: &Path) -> PathBuf {
    let mut xml =
        std::fs::read_to_string(super::manifest_dir().join("scripts/sipp/bench-trunk.xml"))
            .unwrap();
    for (from, to) in [
        (
            r#"<send retrans="500" start_rtd="1">"#,
            r#"<send retrans="500" start_rtd="1" start_txn="invite">"#,
        ),
        (
            r#"<recv response="100" optional="true"/>"#,
            r#"<recv response="100" optional="true" response_txn="invite"/>"#,
        ),
        (
            r#"<recv response="180" optional="global" rtd="1">"#,
            r#"<recv response="180" optional="global" rtd="1" response_txn="invite">"#,
        ),
        (
            r#"<recv response="200" rrs="true"/>"#,
            r#"<recv response="200" rrs="true" response_txn="invite"/>"#,
        ),
        (
            "  <send>\n    <![CDATA[\n      ACK",
            "  <send ack_txn=\"invite\">\n    <![CDATA[\n      ACK",
        ),
        (
            "  <send retrans=\"500\">\n    <![CDATA[\n      BYE",
            "  <send retrans=\"500\" start_txn=\"bye\">\n    <![CDATA[\n      BYE",
        ),
        (
            "<recv response=\"200\"/>\n</scenario>",
            "<recv response=\"200\" response_txn=\"bye\"/>\n</scenario>",
        ),
    ] {
        assert!(xml.contains(from), "bench-trunk.xml has {from}");
        xml = xml.replacen(from, to, 1);
    }
    sipp::custom(dir, "lossy-trunk", &xml)
}
