//! Packet loss (issue 16 item 7): the carrier's trunk and an operator phone (sipp) sit in a
//! network namespace the test makes itself, joined to madoguchi by a veth pair; 5 % of the
//! packets are dropped each way. Every call must still complete exactly once: sipp counts
//! every call placed as successful and none failed, the call log has one `completed` row per
//! call and no call twice, and retransmissions did happen (else the loss was not felt).
//!
//! The loss is `tc netem loss 5%` on both veth ends. Kernels without netem (this project's
//! CI VM has no `sch_netem`) get the same loss from nftables (`numgen random mod 100 < 5
//! drop`, both directions, inside the namespace). Needs root; skipped with a message
//! otherwise, a failure under CI=true. Run by `scripts/test --long`.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::backends;
use common::load::{duplicates, lingering_phone, logged_calls, lossy_trunk, sipp_stats, stat};
use common::rig::{jst, wait, Rig, CALLER, LINE};
use common::sipp::{self, Sipp};

const NS: &str = "madoguchi-loss";
const VETH_HOST: &str = "mdgloss0";
const VETH_NS: &str = "mdgloss1";
const HOST_IP: &str = "10.99.7.1";
const TRUNK_IP: &str = "10.99.7.2";
const PHONE_IP: &str = "10.99.7.3";
const LOSS_PERCENT: u32 = 5;
/// The nftables table of the fallback loss (host side and namespace side).
const NFT_TABLE: &str = "madoguchi_loss";
const CALLS: u64 = 60;

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    run(&["id", "-u"]).is_ok_and(|u| u.trim() == "0")
}

/// How the loss is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    Netem,
    Nftables,
}

/// The namespace and its veth pair; deleted when dropped, whatever happened.
struct Netns;

impl Netns {
    /// Removes what an earlier run that was killed may have left.
    fn delete_stale() {
        let _ = run(&["ip", "netns", "del", NS]);
        let _ = run(&["ip", "link", "del", VETH_HOST]);
        // The host side's loss table (the namespace's goes with the namespace).
        let _ = run(&["nft", "delete", "table", "netdev", NFT_TABLE]);
    }

    fn create() -> Result<Netns, String> {
        Self::delete_stale();
        run(&["ip", "netns", "add", NS])?;
        let ns = Netns;
        for cmd in [
            vec![
                "ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS,
            ],
            vec!["ip", "link", "set", VETH_NS, "netns", NS],
            vec!["ip", "addr", "add", "10.99.7.1/24", "dev", VETH_HOST],
            vec!["ip", "link", "set", VETH_HOST, "up"],
            vec![
                "ip",
                "-n",
                NS,
                "addr",
                "add",
                "10.99.7.2/24",
                "dev",
                VETH_NS,
            ],
            vec![
                "ip",
                "-n",
                NS,
                "addr",
                "add",
                "10.99.7.3/24",
                "dev",
                VETH_NS,
            ],
            vec!["ip", "-n", NS, "link", "set", VETH_NS, "up"],
            vec!["ip", "-n", NS, "link", "set", "lo", "up"],
        ] {
            run(&cmd)?;
        }
        Ok(ns)
    }

    /// Drops LOSS_PERCENT of the packets each way.
    fn add_loss(&self) -> Result<Loss, String> {
        let pct = format!("{LOSS_PERCENT}%");
        let netem = run(&[
            "tc", "qdisc", "add", "dev", VETH_HOST, "root", "netem", "loss", &pct,
        ])
        .and_then(|_| {
            run(&[
                "ip", "netns", "exec", NS, "tc", "qdisc", "add", "dev", VETH_NS, "root", "netem",
                "loss", &pct,
            ])
        });
        match netem {
            Ok(_) => return Ok(Loss::Netem),
            Err(e) => eprintln!("netem unavailable ({e}); dropping with nftables instead"),
        }
        let _ = run(&["tc", "qdisc", "del", "dev", VETH_HOST, "root"]);
        // On ingress, so a drop is a packet lost on the wire: a drop on a sender's output
        // path would be reported to it (EPERM), which a real network never does.
        let table = |dev: &str| {
            format!(
                "table netdev {NFT_TABLE} {{\n\
                   chain lose {{ type filter hook ingress device {dev} priority 0; policy accept; numgen random mod 100 < {LOSS_PERCENT} counter drop; }}\n\
                 }}\n"
            )
        };
        nft(false, &table(VETH_NS))?;
        nft(true, &table(VETH_HOST))?;
        Ok(Loss::Nftables)
    }

    /// Packets dropped so far (both directions), as the loss mechanism counts them.
    fn dropped(&self, loss: Loss) -> u64 {
        let text = match loss {
            Loss::Netem => {
                let a = run(&["tc", "-s", "qdisc", "show", "dev", VETH_HOST]).unwrap_or_default();
                let b = run(&[
                    "ip", "netns", "exec", NS, "tc", "-s", "qdisc", "show", "dev", VETH_NS,
                ])
                .unwrap_or_default();
                return [a, b]
                    .iter()
                    .filter_map(|t| {
                        let i = t.find("dropped ")?;
                        t[i + 8..]
                            .split(|c: char| !c.is_ascii_digit())
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .sum();
            }
            Loss::Nftables => {
                run(&[
                    "ip", "netns", "exec", NS, "nft", "list", "table", "netdev", NFT_TABLE,
                ])
                .unwrap_or_default()
                    + &run(&["nft", "list", "table", "netdev", NFT_TABLE]).unwrap_or_default()
            }
        };
        text.split("counter packets ")
            .skip(1)
            .filter_map(|t| t.split(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// Loads nftables rules on the host or in the namespace.
fn nft(on_host: bool, rules: &str) -> Result<(), String> {
    let file = std::env::temp_dir().join(format!(
        "madoguchi-loss-{}-{}.nft",
        std::process::id(),
        on_host
    ));
    std::fs::write(&file, rules).map_err(|e| e.to_string())?;
    let path = file.to_str().unwrap();
    let res = if on_host {
        run(&["nft", "-f", path])
    } else {
        run(&["ip", "netns", "exec", NS, "nft", "-f", path])
    };
    let _ = std::fs::remove_file(&file);
    res.map(|_| ())
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the peer.
        Self::delete_stale();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long tier: scripts/test --long"]
async fn every_call_completes_exactly_once_through_five_percent_loss() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the loss test needs root (network namespaces) and CI=true may not skip it"
        );
        eprintln!("note: not root: the loss test (network namespace, packet loss) is skipped");
        return;
    }
    let ns = Netns::create().expect("network namespace and veth pair");
    let Some(rig) = Rig::on(backends()[0], jst(2026, 11, 25, 10, 0), |c| {
        c.sip_addr = format!("{HOST_IP}:0").parse().unwrap();
        c.sip.trunk_nets = vec![format!("{TRUNK_IP}/32").parse().unwrap()];
    })
    .await
    else {
        return;
    };
    let dir = rig.dir.path();
    let in_ns = |scenario: &std::path::Path, ip: &str, port: u16, args: &[&str]| {
        Sipp::start_in_netns(NS, dir, &rig.sip, scenario, ip, port, args)
    };

    // The phone: its UAS takes every call; it registers before the loss starts.
    let uas_port = sipp::port();
    let calls = CALLS.to_string();
    let phone_xml = lingering_phone(dir, 8_000);
    let mut phone = in_ns(&phone_xml, PHONE_IP, uas_port, &["-m", &calls]);
    let cp = uas_port.to_string();
    let mut reg = in_ns(
        &sipp::scenario(dir, "phone-register", &[]),
        PHONE_IP,
        sipp::port(),
        &[
            "-m",
            "1",
            "-s",
            "ph1",
            "-au",
            "ph1",
            "-ap",
            "password-ph1",
            "-key",
            "contact_port",
            &cp,
            "-key",
            "expires",
            "3600",
        ],
    );
    assert_eq!(
        wait(&mut reg, 10).await,
        0,
        "ph1 registers: {}",
        reg.errors()
    );

    let loss = ns.add_loss().expect("packet loss on the veth pair");
    let started = Instant::now();
    // One call at a time: the line takes one (R-LINE-1); the caller hangs up after 200 ms.
    let mut trunk = in_ns(
        &lossy_trunk(dir),
        TRUNK_IP,
        sipp::port(),
        &[
            "-m",
            &calls,
            "-l",
            "1",
            "-r",
            "10",
            "-d",
            "200",
            "-s",
            LINE,
            "-key",
            "caller",
            CALLER,
            "-trace_stat",
            "-fd",
            "1",
        ],
    );
    let trunk_code = wait(&mut trunk, CALLS * 20).await;
    let phone_code = wait(&mut phone, 60).await;
    let took = started.elapsed();
    let dropped = ns.dropped(loss);

    let stats = sipp_stats(dir, "lossy-trunk");
    let (ok, failed, retrans) = (
        stat(&stats, "SuccessfulCall(C)"),
        stat(&stats, "FailedCall(C)"),
        stat(&stats, "Retransmissions(C)"),
    );
    // The call log catches up with the last BYE within moments.
    let db = rig.app.db.open().await;
    let mut rows = logged_calls(&db).await;
    for _ in 0..100 {
        if rows.iter().filter(|(_, c)| c.is_some()).count() as u64 >= CALLS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        rows = logged_calls(&db).await;
    }
    let completed = rows
        .iter()
        .filter(|(_, c)| c.as_deref() == Some("completed"))
        .count() as u64;
    eprintln!(
        "loss test ({loss:?}, {LOSS_PERCENT}% each way): {CALLS} calls in {took:.1?}; sipp: \
         {ok} successful, {failed} failed, {retrans} retransmissions; {dropped} packets \
         dropped; call log: {} rows, {completed} completed",
        rows.len()
    );

    assert_eq!(
        trunk_code,
        0,
        "the trunk's calls all pass: {}",
        trunk.errors()
    );
    assert_eq!(
        phone_code,
        0,
        "the phone's calls all pass: {}",
        phone.errors()
    );
    assert_eq!(
        (ok, failed),
        (CALLS, 0),
        "sipp: every call placed succeeded"
    );
    assert!(dropped > 0, "packets were dropped");
    assert!(retrans > 0, "the trunk retransmitted: the loss was felt");
    assert_eq!(
        duplicates(&rows),
        Vec::<String>::new(),
        "no call logged twice"
    );
    assert_eq!(
        (rows.len() as u64, completed),
        (CALLS, CALLS),
        "one completed row per call: {rows:?}"
    );
    db.close().await;
    rig.stop().await;
    drop(ns);
}
