//! The tokio side of the adapter: UDP and TCP sockets on one address, the timer wheel, and
//! the single task that feeds the Sans-IO [`Proxy`] and carries out what it asks.
//!
//! Nothing here waits on the database or a browser: call events go out on [`CallEvents`],
//! whose subscribers each have their own queue.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ipnet::IpNet;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::calls::{CallEvent, CallEvents};

use super::limits::{accept_backoff, overload_response, Admission, RateLimiter};
use super::proxy::{
    Input, Output, Peer, Proxy, SipCounters, TableSizes, TimerKey, Transport, TrunkStatus,
};
use super::registrar::SavedBinding;
use super::rtp::RtpPool;
use super::settings::SipLimits;
use super::wire::{SipMessage, StreamFramer, MAX_DATAGRAM_BYTES};

/// Most TCP connections held at once by default (`[sip] max_tcp_connections`); more are
/// closed at once so a flood cannot exhaust memory or file descriptors.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 1024;
/// How long [`SipHandle::stop`] waits for the sockets, the core and the connections to end.
const STOP_LIMIT: Duration = Duration::from_secs(5);
/// How long a closing TCP connection may take to send the replies still queued for it.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);
/// Messages that may wait for a connection being opened.
const MAX_WAITING_FOR_CONNECT: usize = 64;
/// How long opening a TCP connection to a phone may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// How long a connection whose peer has stopped sending may take to be sent what is queued.
const LINGER_LIMIT: Duration = Duration::from_secs(5);
/// Datagrams queued for the core; beyond this, overload drops them (UDP peers retransmit).
const INPUT_QUEUE: usize = 8192;
/// Longest a BYE's final answer waits for the call's end to be stored (a stalled database
/// must not leave the other side retransmitting its BYE).
const HOLD_LIMIT: Duration = Duration::from_secs(2);
/// How long a stored end is remembered for a BYE answer that comes after it.
const STORED_MEMORY: Duration = Duration::from_secs(30);
/// How often the core gives back the room of its mostly empty tables (issue 17).
const SHRINK_EVERY: Duration = Duration::from_secs(10);
/// Bytes of datagrams queued for the core: 8192 datagrams of 64 KiB would be half a gigabyte.
const INPUT_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// What the status API shows of the SIP side.
#[derive(Debug, Clone, Serialize)]
pub struct SipStatus {
    /// Where the adapter listens.
    pub local: String,
    /// Table sizes of the core.
    pub tables: TableSizes,
    /// Timers pending.
    pub timers: usize,
    /// TCP connections open.
    pub tcp_flows: usize,
    /// Registered phones: username, operator account, contact, transport.
    pub phones: Vec<RegisteredPhone>,
    /// Counters since start.
    pub counters: CounterSnapshot,
    /// The limits in force (`[sip]`).
    pub limits: SipLimits,
    /// Most TCP connections held at once (`[sip] max_tcp_connections`).
    pub max_tcp_connections: usize,
    /// The carrier side: registration and keep-alive state.
    pub trunk: TrunkStatus,
    /// Calls in progress on the other instances sharing the database (they take line slots).
    pub calls_elsewhere: usize,
}

/// One registered phone.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredPhone {
    /// SIP username.
    pub username: String,
    /// The operator account it belongs to.
    pub operator: Option<String>,
    /// Its contact URI.
    pub contact: String,
    /// UDP or TCP.
    pub transport: Transport,
}

/// The counters, read at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct CounterSnapshot {
    /// Malformed requests answered or dropped.
    pub malformed_requests: u64,
    /// Malformed responses dropped.
    pub malformed_responses: u64,
    /// Requests from outside the trunk refused.
    pub rejected: u64,
    /// INVITEs for numbers that are not our line.
    pub not_our_line: u64,
    /// Calls routed.
    pub calls: u64,
    /// Successful registrations.
    pub registrations: u64,
    /// Refused registrations.
    pub registrations_refused: u64,
    /// New calls refused with 503 while the call log was far behind.
    pub overloaded: u64,
    /// New calls refused with 503 while shutting down.
    pub drained: u64,
    /// Responses with no transaction dropped instead of relayed.
    pub stray_responses: u64,
    /// In-dialog requests and CANCELs refused for coming from neither side of the dialog.
    pub in_dialog_refused: u64,
    /// Datagrams dropped because the core was overloaded.
    pub overload_drops: u64,
    /// TCP connections closed at once because `max_tcp_connections` were open.
    pub tcp_refused: u64,
    /// Messages over their source's rate: dropped (over TCP: read no faster than the rate),
    /// or answered 503 when from the trunk.
    pub rate_limited: u64,
    /// New requests refused because the transaction table was full.
    pub txn_table_full: u64,
    /// TCP connections closed because they did not read what we sent them.
    pub tcp_write_overflow: u64,
    /// TCP connections closed at once because their address held
    /// `max_tcp_connections_per_address`.
    pub tcp_refused_per_address: u64,
    /// TCP connections closed for a message not complete in time, or for idling.
    pub tcp_timed_out: u64,
    /// REGISTERs refused because their source or phone was locked out after failures.
    pub register_locked_out: u64,
    /// Messages re-sent by transaction timers (not first sends).
    pub retransmissions: u64,
}

/// What the transport enforces: the `[sip]` limits, the TCP cap, and who the trunk is.
#[derive(Debug, Clone)]
pub struct TransportLimits {
    /// Most TCP connections held at once.
    pub max_tcp: usize,
    /// The `[sip]` limits.
    pub limits: SipLimits,
    /// The carrier's networks (their rate is `trunk_messages_per_sec`).
    pub trunk: Vec<IpNet>,
}

/// The transport's own counters.
#[derive(Debug, Default)]
struct TransportCounters {
    overload_drops: AtomicU64,
    tcp_refused: AtomicU64,
    rate_limited: AtomicU64,
    tcp_write_overflow: AtomicU64,
    tcp_refused_per_address: AtomicU64,
    tcp_timed_out: AtomicU64,
}

enum CoreMsg {
    /// An input, with the share of the input budget it holds until the core has handled it.
    Input(Input, Option<OwnedSemaphorePermit>),
    /// The reader of a flow ended: drop its writer after queued replies, then tell the core.
    FlowEnded(u64),
    /// A connection we tried to open to this address could not be.
    ConnectFailed(SocketAddr),
    Status(oneshot::Sender<SipStatus>),
}

/// A running SIP adapter.
pub struct SipHandle {
    /// The bound address (port 0 resolved).
    pub local: SocketAddr,
    /// The core's counters (messages in and out, retransmissions …), readable without
    /// asking the core.
    pub counters: Arc<SipCounters>,
    tx: mpsc::Sender<CoreMsg>,
    stop: CancellationToken,
    tasks: TaskTracker,
    critical: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
    /// Changes of our phones' bindings, for whoever stores them (taken once).
    binding_changes: Mutex<Option<mpsc::UnboundedReceiver<BindingsChanged>>>,
}

/// Our bindings of one phone changed: what is left of them (none: it has none left here).
#[derive(Debug, Clone)]
pub struct BindingsChanged {
    /// The phone's SIP username.
    pub aor: String,
    /// Its bindings on this instance now.
    pub saved: Vec<SavedBinding>,
}

impl SipHandle {
    /// The changes of our phones' bindings, in order, for the one task that stores them
    /// (issue 18 item 9); handed out once, later calls get `None`. The core never waits on
    /// the receiver: what it does not read stays queued.
    pub fn take_binding_changes(&self) -> Option<mpsc::UnboundedReceiver<BindingsChanged>> {
        self.binding_changes.lock().ok()?.take()
    }

    /// The other instances carry `n` calls now (their line slots held in the database).
    pub async fn calls_elsewhere(&self, n: usize) {
        let _ = self
            .tx
            .send(CoreMsg::Input(Input::CallsElsewhere(n), None))
            .await;
    }

    /// Another instance's bindings of phone `aor` are now `bindings` (issue 16 item 1).
    pub async fn remote_bindings(
        &self,
        instance: String,
        aor: String,
        bindings: Vec<SavedBinding>,
    ) {
        let input = Input::RemoteBindings {
            instance,
            aor,
            bindings,
        };
        let _ = self.tx.send(CoreMsg::Input(input, None)).await;
    }

    /// The adapter's current status.
    pub async fn status(&self) -> Option<SipStatus> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(CoreMsg::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Operator accounts were disabled: their phones' bindings go, and their REGISTERs are
    /// refused from now on (a status asked for after this returns already shows it).
    pub async fn disable_operators(&self, names: Vec<String>) {
        let _ = self
            .tx
            .send(CoreMsg::Input(Input::DisableOperators(names), None))
            .await;
    }

    /// Stops taking new calls: from now on a new INVITE gets 503 with Retry-After, while the
    /// calls in progress go on to their end.
    pub async fn drain(&self) {
        let _ = self.tx.send(CoreMsg::Input(Input::Drain, None)).await;
    }

    /// The adapter's own long-lived tasks (the core, the UDP reader, the TCP acceptor) with
    /// their names, for a supervisor: each runs until the adapter stops, so one that ends
    /// earlier has failed. Handed out once; later calls get none.
    pub fn take_tasks(&self) -> Vec<(&'static str, JoinHandle<()>)> {
        self.critical
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default()
    }

    /// Stops the sockets, the core and every connection (what is queued for a connection is
    /// still sent), and waits for them to end.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(STOP_LIMIT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.tasks.len(),
                "SIP tasks still running {STOP_LIMIT:?} after stop; leaving them"
            );
        }
    }
}

/// One TCP connection's sending side, as the core and the readers see it.
struct FlowWriter {
    /// The remote address.
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<Bytes>,
    /// Bytes queued and not yet written: bounded by `tcp_write_queue_bytes`.
    queued: Arc<AtomicUsize>,
    /// Cancelled to close the connection at once (it stopped reading, or a write failed).
    close: CancellationToken,
}

/// The open TCP connections.
#[derive(Default)]
struct Flows {
    writers: HashMap<u64, FlowWriter>,
    /// Connections held per remote address.
    per_address: HashMap<IpAddr, usize>,
    /// Connections being opened, with what is to be sent once they are.
    connecting: HashMap<SocketAddr, Vec<Bytes>>,
}

/// A connection's place under both caps, given back when its reader and writer have ended.
struct FlowSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for FlowSlot {
    fn drop(&mut self) {
        if let Ok(mut f) = self.shared.flows.lock() {
            if let Some(n) = f.per_address.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    f.per_address.remove(&self.ip);
                }
            }
        }
    }
}

/// What the sockets, the connections and the core share.
struct Shared {
    udp: Arc<UdpSocket>,
    tx: mpsc::Sender<CoreMsg>,
    flows: Mutex<Flows>,
    /// One per TCP connection open.
    tcp_permits: Arc<Semaphore>,
    /// One per byte of datagram queued for the core.
    input_bytes: Arc<Semaphore>,
    gate: Mutex<RateLimiter>,
    limits: TransportLimits,
    counters: TransportCounters,
    next_flow: AtomicU64,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Shared {
    /// Takes a token for one TCP message from `ip`.
    fn admit(&self, ip: IpAddr) -> Admission {
        let verdict = match self.gate.lock() {
            Ok(mut g) => g.admit(ip, std::time::Instant::now()),
            Err(_) => Admission::Admit,
        };
        self.limited(ip, verdict)
    }

    /// Waits until `ip` may send one more TCP message; `false` if the connection closed
    /// meanwhile.
    async fn wait_for_token(&self, ip: IpAddr, close: &CancellationToken) -> bool {
        let pause = Duration::from_secs_f64(
            1.0 / f64::from(self.limits.limits.source_messages_per_sec.max(1)),
        )
        .max(Duration::from_millis(10));
        loop {
            tokio::select! {
                () = close.cancelled() => return false,
                () = tokio::time::sleep(pause) => {}
            }
            let admitted = self
                .gate
                .lock()
                .map(|mut g| g.admit(ip, std::time::Instant::now()) == Admission::Admit)
                .unwrap_or(true);
            if admitted {
                return true;
            }
        }
    }

    /// Counts (and now and then logs) a message over its source's rate.
    fn limited(&self, ip: IpAddr, verdict: Admission) -> Admission {
        if verdict != Admission::Admit {
            let n = self.counters.rate_limited.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(source = %ip, limited = n, "SIP source over its rate; dropping or refusing its messages");
            }
        }
        verdict
    }

    /// Hands a datagram to the core, within the input budget; dropped (and counted) beyond.
    fn queue_datagram(&self, bytes: Bytes, from: SocketAddr) {
        let budget = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let Ok(permit) = self.input_bytes.clone().try_acquire_many_owned(budget) else {
            self.counters.overload_drops.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let peer = Peer {
            transport: Transport::Udp,
            addr: from,
            flow: None,
        };
        let input = Input::Datagram(bytes, peer);
        if self
            .tx
            .try_send(CoreMsg::Input(input, Some(permit)))
            .is_err()
        {
            self.counters.overload_drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues `bytes` on TCP connection `id`; one that has `tcp_write_queue_bytes` waiting
    /// already is closed instead (it is not reading). `false` if the connection is gone.
    fn send_on_flow(&self, id: u64, bytes: Bytes) -> bool {
        let Ok(flows) = self.flows.lock() else {
            return false;
        };
        let Some(w) = flows.writers.get(&id) else {
            return false;
        };
        if w.close.is_cancelled() {
            return true;
        }
        let len = bytes.len();
        let queued = w.queued.fetch_add(len, Ordering::Relaxed) + len;
        if queued > self.limits.limits.tcp_write_queue_bytes {
            w.queued.fetch_sub(len, Ordering::Relaxed);
            w.close.cancel();
            let n = self
                .counters
                .tcp_write_overflow
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            if n.is_power_of_two() {
                tracing::warn!(peer = %w.addr, closed = n, "SIP TCP peer does not read what we send; connection closed");
            }
            return true;
        }
        if w.tx.send(bytes).is_err() {
            w.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The open connection to `addr`, if any.
    fn flow_to(&self, addr: SocketAddr) -> Option<u64> {
        let flows = self.flows.lock().ok()?;
        flows
            .writers
            .iter()
            .find(|(_, w)| w.addr == addr && !w.close.is_cancelled())
            .map(|(id, _)| *id)
    }
}

/// Binds UDP and TCP on `addr` (the same port for both) and starts the adapter under
/// `limits`; it runs until `stop` is cancelled.
pub async fn start<F>(
    addr: SocketAddr,
    build: F,
    events: CallEvents,
    counters: Arc<SipCounters>,
    limits: TransportLimits,
    stop: CancellationToken,
    rtp: RtpPool,
) -> std::io::Result<SipHandle>
where
    F: FnOnce(SocketAddr) -> Result<Proxy, String>,
{
    let (udp, tcp) = bind_pair(addr).await?;
    let local = udp.local_addr()?;
    let proxy = build(local).map_err(std::io::Error::other)?;
    let udp = Arc::new(udp);
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let tracker = TaskTracker::new();
    // The core loop listens on a watch; it follows the one stop signal.
    let (shutdown, shutdown_rx) = watch::channel(false);
    tracker.spawn({
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            let _ = shutdown.send(true);
        }
    });
    let max_tcp = limits.max_tcp;
    let shared = Arc::new(Shared {
        udp: udp.clone(),
        tx: tx.clone(),
        flows: Mutex::new(Flows::default()),
        tcp_permits: Arc::new(Semaphore::new(limits.max_tcp)),
        input_bytes: Arc::new(Semaphore::new(INPUT_QUEUE_BYTES)),
        gate: Mutex::new(RateLimiter::new(
            limits.trunk.clone(),
            &limits.limits,
            std::time::Instant::now(),
        )),
        limits,
        counters: TransportCounters::default(),
        next_flow: AtomicU64::new(1),
        stop: stop.clone(),
        tasks: tracker.clone(),
    });

    let mut tasks = Vec::new();
    tasks.push(("SIP UDP reader", tracker.spawn(udp_reader(shared.clone()))));
    tasks.push((
        "SIP TCP acceptor",
        tracker.spawn(tcp_acceptor(tcp, shared.clone())),
    ));
    let stored = events.stored().subscribe();
    let (binding_tx, binding_rx) = mpsc::unbounded_channel();
    let core = CoreLoop {
        binding_tx,
        log_backlogged: false,
        held: Held::default(),
        proxy,
        shared,
        events,
        counters: counters.clone(),
        timers: BTreeMap::new(),
        timer_index: HashMap::new(),
        timer_seq: 0,
        local,
        rtp,
        announcing: HashMap::new(),
    };
    tasks.push(("SIP core", tracker.spawn(core.run(rx, shutdown_rx, stored))));
    tracing::info!(%local, max_tcp, "SIP adapter listening (UDP and TCP)");
    Ok(SipHandle {
        local,
        counters,
        tx,
        stop,
        tasks: tracker,
        critical: Mutex::new(tasks),
        binding_changes: Mutex::new(Some(binding_rx)),
    })
}

/// UDP and TCP on the same port, so one address is the adapter. With port 0 the kernel
/// picks a free UDP port whose TCP twin may be taken: try again with another.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut tries = 0;
    loop {
        let udp = bind_udp(addr)?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && tries < 20 => {
                tries += 1;
                tracing::debug!(error = %e, "TCP twin of the UDP port taken; binding again");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Receive buffer asked for on the UDP socket.
const UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;
/// Datagrams read per wake-up before the reader gives the runtime a turn.
const UDP_BATCH: usize = 256;

/// The UDP socket, with a receive buffer that holds a few milliseconds of a flood: while the
/// reader waits for a CPU the kernel keeps queueing instead of dropping (the trunk's datagrams
/// with the flood's). The kernel caps it at `net.core.rmem_max`.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = sock.set_recv_buffer_size(UDP_RECV_BUFFER) {
        tracing::debug!(error = %e, "could not enlarge the SIP UDP receive buffer");
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

async fn udp_reader(shared: Arc<Shared>) {
    let udp = shared.udp.clone();
    let stop = shared.stop.clone();
    // Its own buckets: no lock on the path every datagram takes (TCP has the shared ones).
    let mut gate = RateLimiter::new(
        shared.limits.trunk.clone(),
        &shared.limits.limits,
        std::time::Instant::now(),
    );
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES + 1];
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            r = udp.readable() => if r.is_err() { continue },
        }
        // Drain what has arrived without a round through the runtime per datagram: under a
        // flood the socket buffer must empty faster than it fills, or the kernel drops the
        // trunk's datagrams along with the flood's.
        for _ in 0..UDP_BATCH {
            let (n, from) = match udp.try_recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // ICMP port-unreachable surfaces here on some systems; it is not fatal.
                Err(e) => {
                    tracing::debug!(error = %e, "udp recv error");
                    continue;
                }
            };
            if n == 0 || buf[..n].iter().all(|b| b.is_ascii_whitespace()) {
                continue; // keep-alive
            }
            let verdict = gate.admit(from.ip(), std::time::Instant::now());
            match shared.limited(from.ip(), verdict) {
                Admission::Admit => {}
                Admission::Drop => continue,
                Admission::Refuse => {
                    if let Some(r) = SipMessage::parse_datagram(&buf[..n])
                        .ok()
                        .and_then(|m| overload_response(&m))
                    {
                        let _ = udp.try_send_to(&r.to_bytes(), from);
                    }
                    continue;
                }
            }
            shared.queue_datagram(Bytes::copy_from_slice(&buf[..n]), from);
        }
    }
}

async fn tcp_acceptor(listener: TcpListener, shared: Arc<Shared>) {
    let stop = shared.stop.clone();
    let mut failures: u32 = 0;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: the error repeats until something
                // closes, so back off instead of spinning on it, and log now and then.
                failures = failures.saturating_add(1);
                if failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "SIP TCP accept failed; backing off");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(accept_backoff(failures - 1)) => {}
                }
                continue;
            }
        };
        failures = 0;
        spawn_flow(&shared, stream, from);
    }
}

/// Runs one TCP connection (accepted or opened by us) if the cap allows; else closes it.
/// Returns its id.
fn spawn_flow(shared: &Arc<Shared>, stream: TcpStream, from: SocketAddr) -> Option<u64> {
    let Ok(permit) = shared.tcp_permits.clone().try_acquire_owned() else {
        // Dropping the stream closes it at once.
        let refused = shared.counters.tcp_refused.fetch_add(1, Ordering::Relaxed) + 1;
        if refused.is_power_of_two() {
            tracing::warn!(%from, refused, "too many SIP TCP connections; closing new ones");
        }
        return None;
    };
    let ip = from.ip();
    {
        let Ok(mut f) = shared.flows.lock() else {
            return None;
        };
        let held = f.per_address.entry(ip).or_insert(0);
        if *held >= shared.limits.limits.max_tcp_connections_per_address {
            let refused = shared
                .counters
                .tcp_refused_per_address
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            if refused.is_power_of_two() {
                tracing::warn!(%from, refused, "too many SIP TCP connections from one address; closing new ones");
            }
            return None;
        }
        *held += 1;
    }
    let slot = Arc::new(FlowSlot {
        shared: shared.clone(),
        ip,
        _permit: permit,
    });
    let id = shared.next_flow.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (wtx, wrx) = mpsc::unbounded_channel::<Bytes>();
    let queued = Arc::new(AtomicUsize::new(0));
    let close = shared.stop.child_token();
    if let Ok(mut f) = shared.flows.lock() {
        // What waited for this connection goes first, before anything sent from now on.
        for b in f.connecting.remove(&from).unwrap_or_default() {
            queued.fetch_add(b.len(), Ordering::Relaxed);
            let _ = wtx.send(b);
        }
        f.writers.insert(
            id,
            FlowWriter {
                addr: from,
                tx: wtx,
                queued: queued.clone(),
                close: close.clone(),
            },
        );
    }
    // The slot under the caps is held until both halves have ended.
    shared.tasks.spawn(flow_writer(
        writer,
        wrx,
        queued,
        close.clone(),
        shared.stop.clone(),
        slot.clone(),
    ));
    shared
        .tasks
        .spawn(flow_reader(shared.clone(), reader, id, from, close, slot));
    Some(id)
}

/// Writes what the core queues for one connection, in order, until the queue is dropped or
/// the connection is closed; on stop, what is queued already is still sent (a last reply).
async fn flow_writer(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut wrx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    close: CancellationToken,
    stop: CancellationToken,
    _slot: Arc<FlowSlot>,
) {
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => {
                let flush = async {
                    while let Ok(b) = wrx.try_recv() {
                        writer.write_all(&b).await?;
                    }
                    Ok::<_, std::io::Error>(())
                };
                let _ = tokio::time::timeout(FLUSH_LIMIT, flush).await;
                break;
            }
            () = close.cancelled() => break,
            b = wrx.recv() => b,
        };
        let Some(b) = next else { break };
        let wrote = tokio::select! {
            r = writer.write_all(&b) => r.is_ok(),
            () = close.cancelled() => false,
        };
        queued.fetch_sub(b.len(), Ordering::Relaxed);
        if !wrote {
            break;
        }
    }
    // Also ends the reader, if it is still reading.
    close.cancel();
    let _ = writer.shutdown().await;
}

/// Frames what one connection sends and hands each message to the core, until the peer
/// closes, breaks framing, stays silent too long, or the connection is closed.
async fn flow_reader(
    shared: Arc<Shared>,
    mut reader: tokio::net::tcp::OwnedReadHalf,
    id: u64,
    from: SocketAddr,
    close: CancellationToken,
    _slot: Arc<FlowSlot>,
) {
    let peer = Peer {
        transport: Transport::Tcp,
        addr: from,
        flow: Some(id),
    };
    let tx = shared.tx.clone();
    let limits = &shared.limits.limits;
    let idle = Duration::from_secs(limits.tcp_idle_timeout_secs);
    let per_message = Duration::from_secs(limits.tcp_message_timeout_secs);
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    // A message must arrive whole by its deadline, however the peer spreads its bytes; with
    // none under way the connection may idle, each message or keep-alive starting over.
    let mut active = Instant::now();
    let mut message_started: Option<Instant> = None;
    'read: loop {
        let deadline = match message_started {
            Some(t) => t + per_message,
            None => active + idle,
        };
        let read = tokio::select! {
            () = close.cancelled() => break,
            r = tokio::time::timeout_at(deadline, reader.read(&mut buf)) => r,
        };
        let n = match read {
            Err(_) => {
                shared
                    .counters
                    .tcp_timed_out
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %from, partial = message_started.is_some(), "SIP TCP connection timed out");
                break;
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        let frames = framer.push(&buf[..n]);
        let now = Instant::now();
        let pairs = framer.take_keepalives();
        if pairs >= 2 {
            // RFC 5626 §4.4.1: a double-CRLF ping gets a CRLF pong (one per read at most).
            shared.send_on_flow(id, Bytes::from_static(b"\r\n"));
        }
        if pairs > 0 || !frames.messages.is_empty() {
            active = now;
        }
        if !frames.messages.is_empty() || framer.pending_bytes() == 0 {
            message_started = None;
        }
        if framer.pending_bytes() > 0 && message_started.is_none() {
            message_started = Some(now);
        }
        for m in frames.messages {
            match shared.admit(from.ip()) {
                Admission::Admit => {}
                Admission::Drop => {
                    // Over TCP a source over its rate is read no faster than its rate: the
                    // connection backs up and the sender's kernel waits, costing us nothing.
                    if !shared.wait_for_token(from.ip(), &close).await {
                        break 'read;
                    }
                }
                Admission::Refuse => {
                    if let Some(r) = overload_response(&m) {
                        shared.send_on_flow(id, r.to_bytes());
                    }
                    continue;
                }
            }
            if tx
                .send(CoreMsg::Input(Input::Message(Box::new(m), peer), None))
                .await
                .is_err()
            {
                break 'read;
            }
        }
        if let Some(e) = frames.error {
            let _ = tx
                .send(CoreMsg::Input(Input::StreamError(Box::new(e), peer), None))
                .await;
            break;
        }
    }
    let _ = tx.send(CoreMsg::FlowEnded(id)).await;
    // Replies still queued may go out, but a peer that does not read cannot keep the slot.
    tokio::select! {
        () = close.cancelled() => {}
        () = tokio::time::sleep(LINGER_LIMIT) => close.cancel(),
    }
}

/// Final answers to BYEs waiting until the end of their call is in the call log, and the
/// ends stored lately (the answer often comes after the write).
#[derive(Default)]
struct Held {
    waiting: HashMap<String, Vec<(Peer, Bytes, Instant)>>,
    stored: HashSet<String>,
    stored_order: VecDeque<(Instant, String)>,
    /// The writer is gone (shutting down): nothing will be announced any more.
    no_writer: bool,
}

impl Held {
    fn remember_stored(&mut self, key: String, now: Instant) {
        self.forget_stored(now);
        if self.stored.insert(key.clone()) {
            self.stored_order.push_back((now, key));
        }
    }

    /// Forgets the ends stored more than [`STORED_MEMORY`] ago. Also run on the shrink tick
    /// (issue 17): after a burst no new end comes to push the old ones out, and the keys left
    /// (one per call of the last 30 s, scattered over the burst's heap pages) would keep
    /// those pages from going back to the system.
    fn forget_stored(&mut self, now: Instant) {
        while let Some((t, _)) = self.stored_order.front() {
            if now.duration_since(*t) < STORED_MEMORY {
                break;
            }
            if let Some((_, old)) = self.stored_order.pop_front() {
                self.stored.remove(&old);
            }
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.waiting.values().flatten().map(|(_, _, t)| *t).min()
    }
}

struct CoreLoop {
    /// Where changes of our bindings go to be stored.
    binding_tx: mpsc::UnboundedSender<BindingsChanged>,
    /// What the proxy was last told of the call log's backlog.
    log_backlogged: bool,
    held: Held,
    proxy: Proxy,
    shared: Arc<Shared>,
    events: CallEvents,
    counters: Arc<SipCounters>,
    timers: BTreeMap<(Instant, u64), TimerKey>,
    timer_index: HashMap<TimerKey, (Instant, u64)>,
    timer_seq: u64,
    local: SocketAddr,
    /// The announcements' sockets and audio.
    rtp: RtpPool,
    /// Announcements streaming, by call key: cancelled when the core says stop.
    announcing: HashMap<String, CancellationToken>,
}

impl CoreLoop {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<CoreMsg>,
        mut shutdown: watch::Receiver<bool>,
        mut stored: broadcast::Receiver<Arc<CallEvent>>,
    ) {
        // What the core asked for at start (the carrier UAC's first timers) and was given
        // before it ran (bindings taken back: their expiry timers).
        self.execute();
        let mut shrink = tokio::time::interval(SHRINK_EVERY);
        shrink.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hold_until = self.held.oldest().map(|t| t + HOLD_LIMIT);
            let hold_over = async {
                match hold_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let next = self.timers.keys().next().map(|(t, _)| *t);
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = sleep => {
                    let now = Instant::now();
                    while let Some((&(t, seq), _)) = self.timers.iter().next() {
                        if t > now {
                            break;
                        }
                        if let Some(key) = self.timers.remove(&(t, seq)) {
                            self.timer_index.remove(&key);
                            self.proxy.handle_input(Input::Timer(key));
                            self.execute();
                        }
                    }
                }
                ev = stored.recv(), if !self.held.no_writer => match ev {
                    Ok(ev) => {
                        if let CallEvent::Ended { call, .. } = ev.as_ref() {
                            self.stored(call.key.clone());
                        }
                    }
                    // Missed some announcements: release everything rather than guess.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.release_all(),
                    Err(broadcast::error::RecvError::Closed) => {
                        self.held.no_writer = true;
                        self.release_all();
                    }
                },
                _ = shrink.tick() => self.shrink_tables(),
                _ = hold_over => {
                    tracing::warn!("call log slow: a BYE's answer sent before the end was stored");
                    let now = Instant::now();
                    let due: Vec<String> = self
                        .held
                        .waiting
                        .iter()
                        .filter(|(_, v)| v.iter().any(|(_, _, t)| now.duration_since(*t) >= HOLD_LIMIT))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in due {
                        self.release(&key);
                    }
                }
                msg = rx.recv() => match msg {
                    None => break,
                    Some(CoreMsg::Input(input, budget)) => {
                        let behind = self.events.stored().behind();
                        if behind != self.log_backlogged {
                            self.log_backlogged = behind;
                            if behind {
                                tracing::warn!(waiting = self.events.stored().waiting(), "call log far behind: new calls get 503 until it catches up");
                            } else {
                                tracing::info!("call log caught up: new calls are taken again");
                            }
                            self.proxy.handle_input(Input::LogBacklog(behind));
                        }
                        self.proxy.handle_input(input);
                        drop(budget);
                        self.execute();
                    }
                    Some(CoreMsg::FlowEnded(id)) => {
                        if let Ok(mut f) = self.shared.flows.lock() {
                            f.writers.remove(&id);
                        }
                        self.proxy.handle_input(Input::FlowClosed(id));
                        self.execute();
                    }
                    Some(CoreMsg::ConnectFailed(addr)) => {
                        self.proxy.handle_input(Input::ConnectFailed(addr));
                        self.execute();
                    }
                    Some(CoreMsg::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                },
            }
        }
        // Stopping: whatever still waits for the log goes out now, best effort.
        self.release_all();
    }

    /// Gives back the room a burst left in the proxy's and the driver's tables.
    fn shrink_tables(&mut self) {
        use super::shrink::{map, queue, set};
        self.proxy.shrink_tables();
        self.held.forget_stored(Instant::now());
        map(&mut self.timer_index);
        map(&mut self.announcing);
        map(&mut self.held.waiting);
        set(&mut self.held.stored);
        queue(&mut self.held.stored_order);
        if let Ok(mut f) = self.shared.flows.lock() {
            map(&mut f.writers);
            map(&mut f.per_address);
            map(&mut f.connecting);
        }
    }

    fn status(&self) -> SipStatus {
        let c = &self.counters;
        let t = &self.shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SipStatus {
            local: self.local.to_string(),
            tables: self.proxy.table_sizes(),
            timers: self.timers.len(),
            tcp_flows: self
                .shared
                .flows
                .lock()
                .map(|f| f.writers.len())
                .unwrap_or(0),
            phones: self
                .proxy
                .registered_phones()
                .into_iter()
                .map(|(username, operator, contact, transport)| RegisteredPhone {
                    username,
                    operator,
                    contact,
                    transport,
                })
                .collect(),
            counters: CounterSnapshot {
                malformed_requests: load(&c.malformed_requests),
                malformed_responses: load(&c.malformed_responses),
                rejected: load(&c.rejected),
                not_our_line: load(&c.not_our_line),
                calls: load(&c.calls),
                registrations: load(&c.registrations),
                registrations_refused: load(&c.registrations_refused),
                overloaded: load(&c.overloaded),
                drained: load(&c.drained),
                stray_responses: load(&c.stray_responses),
                in_dialog_refused: load(&c.in_dialog_refused),
                overload_drops: load(&t.overload_drops),
                tcp_refused: load(&t.tcp_refused),
                rate_limited: load(&t.rate_limited),
                txn_table_full: load(&c.txn_table_full),
                tcp_write_overflow: load(&t.tcp_write_overflow),
                tcp_refused_per_address: load(&t.tcp_refused_per_address),
                tcp_timed_out: load(&t.tcp_timed_out),
                register_locked_out: load(&c.register_locked_out),
                retransmissions: load(&c.retransmissions),
            },
            limits: self.shared.limits.limits.clone(),
            max_tcp_connections: self.shared.limits.max_tcp,
            trunk: self.proxy.trunk_status(),
            calls_elsewhere: self.proxy.calls_elsewhere(),
        }
    }

    /// Carries out everything the core asks for, until it has nothing more.
    fn execute(&mut self) {
        while let Some(o) = self.proxy.poll_output() {
            match o {
                Output::Send(peer, bytes) => self.send(peer, bytes),
                Output::Arm(key, after) => {
                    if let Some(old) = self.timer_index.remove(&key) {
                        self.timers.remove(&old);
                    }
                    self.timer_seq += 1;
                    let at = (Instant::now() + after, self.timer_seq);
                    self.timers.insert(at, key.clone());
                    self.timer_index.insert(key, at);
                }
                Output::Disarm(key) => {
                    if let Some(old) = self.timer_index.remove(&key) {
                        self.timers.remove(&old);
                    }
                }
                Output::Event(e) => self.events.publish(e),
                Output::Announce(order) => self.announce(order),
                Output::StopAnnouncement { call, .. } => {
                    if let Some(t) = self.announcing.remove(&call) {
                        t.cancel();
                    }
                }
                Output::Bindings { aor, saved } => {
                    let _ = self.binding_tx.send(BindingsChanged { aor, saved });
                }
                Output::SendWhenStored { call, peer, bytes } => {
                    if self.held.no_writer || self.held.stored.contains(&call) {
                        self.send(peer, bytes);
                    } else {
                        let entry = self.held.waiting.entry(call).or_default();
                        entry.push((peer, bytes, Instant::now()));
                    }
                }
            }
        }
    }

    /// Streams an announcement in a task of its own (ended by the core, or by the one stop
    /// signal); the core hears when it has played to its end.
    fn announce(&mut self, order: super::proxy::AnnounceOrder) {
        let stop = self.shared.stop.child_token();
        let call = order.call.clone();
        let tx = self.shared.tx.clone();
        let Some(stream) = self.rtp.stream(&order, stop.clone()) else {
            // Cannot happen with the plan the core was given; end it rather than wait.
            let _ = tx.try_send(CoreMsg::Input(Input::AnnouncementEnded(call), None));
            return;
        };
        if let Some(old) = self.announcing.insert(call.clone(), stop.clone()) {
            old.cancel();
        }
        self.shared.tasks.spawn(async move {
            stream.await;
            if !stop.is_cancelled() {
                let _ = tx
                    .send(CoreMsg::Input(Input::AnnouncementEnded(call), None))
                    .await;
            }
        });
    }

    /// The end of `key` is in the call log: its held answers go out.
    fn stored(&mut self, key: String) {
        self.release(&key);
        self.held.remember_stored(key, Instant::now());
    }

    fn release(&mut self, key: &str) {
        for (peer, bytes, _) in self.held.waiting.remove(key).unwrap_or_default() {
            self.send(peer, bytes);
        }
    }

    fn release_all(&mut self) {
        let keys: Vec<String> = self.held.waiting.keys().cloned().collect();
        for key in keys {
            self.release(&key);
        }
    }

    fn send(&mut self, peer: Peer, bytes: Bytes) {
        match peer.transport {
            Transport::Udp => {
                // Never wait on the socket: a full buffer loses the datagram like the network
                // would, and the transaction retransmits.
                if let Err(e) = self.shared.udp.try_send_to(&bytes, peer.addr) {
                    tracing::debug!(error = %e, to = %peer.addr, "udp send failed");
                }
            }
            Transport::Tcp => {
                let flow = peer.flow.or_else(|| self.shared.flow_to(peer.addr));
                match flow {
                    Some(id) => {
                        if !self.shared.send_on_flow(id, bytes) {
                            // The flow is gone: the binding over it is unreachable now.
                            let _ = self.shared.tx.try_send(CoreMsg::FlowEnded(id));
                        }
                    }
                    None => self.connect(peer.addr, bytes),
                }
            }
        }
    }

    /// Opens a connection to `addr` (a phone's Contact, RFC 3261 §18.1.1) and sends `bytes`
    /// once it is open; what is sent there meanwhile waits with it, in order.
    fn connect(&mut self, addr: SocketAddr, bytes: Bytes) {
        {
            let Ok(mut f) = self.shared.flows.lock() else {
                return;
            };
            if let Some(waiting) = f.connecting.get_mut(&addr) {
                // A handful of requests of a call; more means something is wrong.
                if waiting.len() < MAX_WAITING_FOR_CONNECT {
                    waiting.push(bytes);
                }
                return;
            }
            f.connecting.insert(addr, vec![bytes]);
        }
        let shared = self.shared.clone();
        self.shared.tasks.spawn(async move {
            let connected = tokio::select! {
                () = shared.stop.cancelled() => return,
                r = tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect(addr)) => r,
            };
            let opened = match connected {
                Ok(Ok(stream)) => spawn_flow(&shared, stream, addr).is_some(),
                Ok(Err(e)) => {
                    tracing::debug!(to = %addr, error = %e, "tcp connect failed");
                    false
                }
                Err(_) => {
                    tracing::debug!(to = %addr, "tcp connect timed out");
                    false
                }
            };
            if !opened {
                if let Ok(mut f) = shared.flows.lock() {
                    f.connecting.remove(&addr);
                }
                let _ = shared.tx.send(CoreMsg::ConnectFailed(addr)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bursts_stored_ends_are_forgotten_without_a_new_one() {
        let mut held = Held::default();
        let t0 = Instant::now();
        for i in 0..1000 {
            held.remember_stored(format!("call-{i}"), t0);
        }
        held.forget_stored(t0 + STORED_MEMORY / 2);
        assert_eq!(
            held.stored.len(),
            1000,
            "a BYE's answer may still need them"
        );
        held.forget_stored(t0 + STORED_MEMORY);
        assert!(held.stored.is_empty() && held.stored_order.is_empty());
    }
}
