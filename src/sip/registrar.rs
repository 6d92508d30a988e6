//! The registrar (RFC 3261 §10.3): operator phones REGISTER with digest authentication and
//! their bindings (contact, flow, expiry) are what an incoming call forks to.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

use super::digest::{Algorithm, DigestError, DigestVerifier, PhoneSecret};
use super::settings::{PhoneSettings, RegistrarSettings};
use super::wire::{uri, SipMessage};

/// One registered contact of a phone.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding<F> {
    /// The phone's SIP username (its AOR user).
    pub aor: String,
    /// The contact URI, without header parameters.
    pub contact: String,
    /// How to reach it: the flow the REGISTER came over.
    pub flow: F,
    /// When it lapses.
    pub expires_at: DateTime<Utc>,
    /// The phone's User-Agent, for the dashboard.
    pub user_agent: Option<String>,
    call_id: String,
    cseq: u32,
}

/// A change to the binding timers the driver must make.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingTimer {
    /// (Re-)arm the expiry of (aor, contact) at this instant.
    Arm(String, String, DateTime<Utc>),
    /// Forget it.
    Disarm(String, String),
}

crate::code_enum! {
    /// How a REGISTER ended, for the counters and the logs.
    pub enum RegisterOutcome: "register_outcome" {
        /// A contact was bound (or refreshed, or removed).
        Registered = "registered" / "登録",
        /// Asked for credentials (the normal first answer).
        Challenged = "challenged" / "認証要求",
        /// Wrong credentials or a replayed nonce count.
        Refused = "refused" / "認証失敗",
        /// The phone's operator account is disabled (403).
        Disabled = "disabled" / "利用者無効",
        /// The nonce was too old: asked again with stale=true.
        Stale = "stale" / "認証期限切れ",
        /// The request was malformed.
        BadRequest = "bad_request" / "不正な要求",
        /// An older CSeq than the binding's.
        OutOfOrder = "out_of_order" / "順序違い",
        /// An expiry below Min-Expires (423).
        TooBrief = "too_brief" / "登録期間不足",
    }
}

/// The result of one REGISTER.
#[derive(Debug)]
pub struct RegisterResult {
    /// The response to send.
    pub response: SipMessage,
    /// Timer changes.
    pub timers: Vec<BindingTimer>,
    /// For the log: who, and what happened (`registered`, `challenged`, `refused` …).
    pub summary: RegisterOutcome,
}

struct Phone {
    secret: PhoneSecret,
    algorithms: Vec<Algorithm>,
    operator: Option<String>,
}

/// Bindings and credentials of the operator phones.
pub struct Registrar<F> {
    settings: RegistrarSettings,
    verifier: DigestVerifier,
    phones: HashMap<String, Phone>,
    bindings: HashMap<String, Vec<Binding<F>>>,
    /// Operator accounts that are disabled: their phones may not register.
    disabled_operators: HashSet<String>,
}

/// Splits a header row at top-level commas (not inside quotes or `<>`).
pub fn split_list(value: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut angle, mut esc) =
        (Vec::new(), String::new(), false, false, false);
    for c in value.chars() {
        if esc {
            esc = false;
        } else if quoted && c == '\\' {
            esc = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == '<' {
            angle = true;
        } else if !quoted && c == '>' {
            angle = false;
        } else if !quoted && !angle && c == ',' {
            out.push(std::mem::take(&mut cur).trim().to_string());
            continue;
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The header parameters of a name-addr (after the `>`), e.g. `expires`.
fn header_param(value: &str, name: &str) -> Option<String> {
    let tail = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map(|(_, t)| t).unwrap_or(""),
    };
    tail.split(';').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn unix(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0)
}

impl<F: Clone + PartialEq> Registrar<F> {
    /// A registrar for `phones` under `settings`.
    pub fn new(settings: &RegistrarSettings, phones: &[PhoneSettings]) -> Result<Self, String> {
        let verifier = DigestVerifier::new(settings.realm.clone())
            .map_err(|e| e.to_string())?
            .with_nonce_lifetime(settings.nonce_lifetime_secs);
        let mut map = HashMap::new();
        for p in phones {
            let algorithms: Vec<Algorithm> = p
                .algorithms
                .iter()
                .filter_map(|a| Algorithm::parse(Some(a)))
                .collect();
            map.insert(
                p.username.clone(),
                Phone {
                    secret: PhoneSecret::password(p.password.clone(), &algorithms),
                    algorithms,
                    operator: p.operator.clone(),
                },
            );
        }
        Ok(Self {
            settings: settings.clone(),
            verifier,
            phones: map,
            bindings: HashMap::new(),
            disabled_operators: HashSet::new(),
        })
    }

    /// The operator account of a phone.
    pub fn operator_of(&self, aor: &str) -> Option<&str> {
        self.phones.get(aor).and_then(|p| p.operator.as_deref())
    }

    /// Marks operator accounts disabled: the bindings of their phones (phones.toml's
    /// `operator`) go at once, and their REGISTERs are refused from now on. Returns the
    /// timers to disarm.
    pub fn disable_operators(
        &mut self,
        names: impl IntoIterator<Item = String>,
    ) -> Vec<BindingTimer> {
        self.disabled_operators.extend(names);
        let gone: Vec<String> = self
            .bindings
            .keys()
            .filter(|aor| self.operator_disabled(aor))
            .cloned()
            .collect();
        gone.iter()
            .filter_map(|aor| self.bindings.remove(aor))
            .flatten()
            .map(|b| BindingTimer::Disarm(b.aor, b.contact))
            .collect()
    }

    /// Whether the phone `aor` belongs to a disabled operator account.
    fn operator_disabled(&self, aor: &str) -> bool {
        self.operator_of(aor)
            .is_some_and(|op| self.disabled_operators.contains(op))
    }

    /// Live bindings, all phones.
    pub fn targets(&self, now: DateTime<Utc>) -> Vec<Binding<F>> {
        let mut v: Vec<Binding<F>> = self
            .bindings
            .values()
            .flatten()
            .filter(|b| b.expires_at > now)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.aor.cmp(&b.aor).then(a.contact.cmp(&b.contact)));
        v
    }

    /// Number of bindings held (expired ones included until their timer fires).
    pub fn len(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// Whether no binding is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Source addresses phones registered from (they may send in-dialog INVITEs).
    pub fn phone_ips(&self, ip_of: impl Fn(&F) -> IpAddr) -> Vec<IpAddr> {
        self.bindings
            .values()
            .flatten()
            .map(|b| ip_of(&b.flow))
            .collect()
    }

    /// How the phone `aor` is bound: the flows its bindings were registered over.
    pub fn flows_of(&self, aor: &str) -> Vec<F> {
        self.bindings
            .get(aor)
            .map(|l| l.iter().map(|b| b.flow.clone()).collect())
            .unwrap_or_default()
    }

    /// Drops a binding whose expiry fired; `true` if one went.
    pub fn expire(&mut self, aor: &str, contact: &str, now: DateTime<Utc>) -> bool {
        let Some(list) = self.bindings.get_mut(aor) else {
            return false;
        };
        let before = list.len();
        list.retain(|b| !(b.contact == contact && b.expires_at <= now));
        let gone = list.len() != before;
        if list.is_empty() {
            self.bindings.remove(aor);
        }
        gone
    }

    /// Drops every binding over a flow that closed; returns the timers to disarm.
    pub fn flow_closed(&mut self, dead: impl Fn(&F) -> bool) -> Vec<BindingTimer> {
        let mut timers = Vec::new();
        for list in self.bindings.values_mut() {
            list.retain(|b| {
                let keep = !dead(&b.flow);
                if !keep {
                    timers.push(BindingTimer::Disarm(b.aor.clone(), b.contact.clone()));
                }
                keep
            });
        }
        self.bindings.retain(|_, l| !l.is_empty());
        timers
    }

    fn challenge(
        &self,
        req: &SipMessage,
        algorithms: &[Algorithm],
        stale: bool,
        now: DateTime<Utc>,
    ) -> SipMessage {
        let mut r =
            SipMessage::response_to(req, 401, "Unauthorized", Some(&super::wire::new_tag()));
        for c in self.verifier.challenges(algorithms, stale, unix(now)) {
            let _ = r.add_header("WWW-Authenticate", &c);
        }
        r
    }

    /// Handles one REGISTER that arrived over `flow`.
    pub fn register(&mut self, req: &SipMessage, flow: F, now: DateTime<Utc>) -> RegisterResult {
        let reply = |status: u16, reason: &str| {
            SipMessage::response_to(req, status, reason, Some(&super::wire::new_tag()))
        };
        let Some(aor) = req.header("To").and_then(|t| uri::user_part(&t)) else {
            return RegisterResult {
                response: reply(400, "Bad To"),
                timers: vec![],
                summary: RegisterOutcome::BadRequest,
            };
        };
        // Unknown usernames are challenged exactly like known ones: nothing to enumerate.
        let offered: Vec<Algorithm> = self
            .phones
            .get(&aor)
            .map(|p| p.algorithms.clone())
            .unwrap_or_else(|| vec![Algorithm::Sha256, Algorithm::Md5]);
        let auth = req.headers_all("Authorization");
        let Some(auth) = auth
            .iter()
            .find(|a| a.to_ascii_lowercase().contains("username"))
        else {
            return RegisterResult {
                response: self.challenge(req, &offered, false, now),
                timers: vec![],
                summary: RegisterOutcome::Challenged,
            };
        };
        let phones = &self.phones;
        let verified = self.verifier.verify(
            auth,
            "REGISTER",
            |u| phones.get(u).map(|p| p.secret.clone()),
            unix(now),
        );
        match verified {
            // Authenticated, but no longer allowed: the account behind the phone is disabled.
            Ok(v) if v.username == aor && self.operator_disabled(&aor) => {
                return RegisterResult {
                    response: reply(403, "Forbidden"),
                    timers: vec![],
                    summary: RegisterOutcome::Disabled,
                }
            }
            Ok(v) if v.username == aor => {}
            Ok(_) => {
                return RegisterResult {
                    response: reply(403, "Forbidden"),
                    timers: vec![],
                    summary: RegisterOutcome::Refused,
                }
            }
            Err(DigestError::Stale) => {
                return RegisterResult {
                    response: self.challenge(req, &offered, true, now),
                    timers: vec![],
                    summary: RegisterOutcome::Stale,
                }
            }
            Err(DigestError::Malformed(_)) => {
                return RegisterResult {
                    response: reply(400, "Bad Authorization"),
                    timers: vec![],
                    summary: RegisterOutcome::BadRequest,
                }
            }
            Err(_) => {
                return RegisterResult {
                    response: self.challenge(req, &offered, false, now),
                    timers: vec![],
                    summary: RegisterOutcome::Refused,
                }
            }
        }
        self.apply_bindings(req, &aor, flow, now)
    }

    fn apply_bindings(
        &mut self,
        req: &SipMessage,
        aor: &str,
        flow: F,
        now: DateTime<Utc>,
    ) -> RegisterResult {
        let reply = |status: u16, reason: &str| {
            SipMessage::response_to(req, status, reason, Some(&super::wire::new_tag()))
        };
        let call_id = req.call_id().unwrap_or_default();
        let cseq = req.cseq().map(|c| c.0).unwrap_or(0);
        let expires_header: Option<u32> = match req.header("Expires") {
            Some(v) => match v.trim().parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    return RegisterResult {
                        response: reply(400, "Bad Expires"),
                        timers: vec![],
                        summary: RegisterOutcome::BadRequest,
                    }
                }
            },
            None => None,
        };
        let contacts: Vec<String> = req
            .headers_all("Contact")
            .iter()
            .flat_map(|v| split_list(v))
            .collect();
        let mut timers = Vec::new();
        let list = self.bindings.entry(aor.to_string()).or_default();
        // RFC 3261 §10.3 step 7: an older request of the same Call-ID must not undo a newer one.
        if list
            .iter()
            .any(|b| b.call_id == call_id && b.cseq >= cseq && !contacts.is_empty())
        {
            return RegisterResult {
                response: reply(500, "Out of Order"),
                timers,
                summary: RegisterOutcome::OutOfOrder,
            };
        }
        if contacts.iter().any(|c| c.trim() == "*") {
            if contacts.len() != 1 || expires_header != Some(0) {
                return RegisterResult {
                    response: reply(400, "Invalid Wildcard"),
                    timers,
                    summary: RegisterOutcome::BadRequest,
                };
            }
            for b in list.drain(..) {
                timers.push(BindingTimer::Disarm(b.aor, b.contact));
            }
        }
        let mut changes = Vec::new();
        for c in contacts.iter().filter(|c| c.trim() != "*") {
            let Some(u) = uri::name_addr_uri(c) else {
                return RegisterResult {
                    response: reply(400, "Bad Contact"),
                    timers,
                    summary: RegisterOutcome::BadRequest,
                };
            };
            let expires = match header_param(c, "expires") {
                Some(e) => match e.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => {
                        return RegisterResult {
                            response: reply(400, "Bad Contact expires"),
                            timers,
                            summary: RegisterOutcome::BadRequest,
                        }
                    }
                },
                None => expires_header.unwrap_or(self.settings.default_expires),
            };
            if expires != 0 && expires < self.settings.min_expires {
                let mut r = reply(423, "Interval Too Brief");
                let _ = r.add_header("Min-Expires", &self.settings.min_expires.to_string());
                return RegisterResult {
                    response: r,
                    timers,
                    summary: RegisterOutcome::TooBrief,
                };
            }
            changes.push((u.to_string(), expires.min(self.settings.max_expires)));
        }
        for (contact, expires) in changes {
            list.retain(|b| b.contact != contact);
            if expires == 0 {
                timers.push(BindingTimer::Disarm(aor.to_string(), contact));
                continue;
            }
            let expires_at = now + Duration::seconds(i64::from(expires));
            timers.push(BindingTimer::Arm(
                aor.to_string(),
                contact.clone(),
                expires_at,
            ));
            list.push(Binding {
                aor: aor.to_string(),
                contact,
                flow: flow.clone(),
                expires_at,
                user_agent: req
                    .header("User-Agent")
                    .map(|u| u.chars().take(100).collect()),
                call_id: call_id.clone(),
                cseq,
            });
        }
        let mut ok = reply(200, "OK");
        for b in list.iter() {
            let left = (b.expires_at - now).num_seconds().max(0);
            let _ = ok.add_header("Contact", &format!("<{}>;expires={left}", b.contact));
        }
        let _ = ok.add_header("Date", &now.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
        if list.is_empty() {
            self.bindings.remove(aor);
        }
        RegisterResult {
            response: ok,
            timers,
            summary: RegisterOutcome::Registered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_list(r#""A, B" <sip:a@h;x=1,2>;expires=60, <sip:b@h>"#),
            vec![
                r#""A, B" <sip:a@h;x=1,2>;expires=60"#.to_string(),
                "<sip:b@h>".to_string()
            ]
        );
        assert_eq!(split_list("*"), vec!["*".to_string()]);
    }

    #[test]
    fn expires_param_is_read_after_the_uri() {
        assert_eq!(
            header_param("<sip:a@h;expires=5>;expires=60", "expires").as_deref(),
            Some("60")
        );
        assert_eq!(header_param("<sip:a@h>", "expires"), None);
    }
}
