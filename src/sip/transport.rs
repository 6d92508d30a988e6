//! The tokio side of the adapter: UDP and TCP sockets on one address, the timer wheel, and
//! the single task that feeds the Sans-IO [`Proxy`] and carries out what it asks.
//!
//! Nothing here waits on the database or a browser: call events go out on [`CallEvents`],
//! whose subscribers each have their own queue.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::calls::{CallEvent, CallEvents};

use super::proxy::{Input, Output, Peer, Proxy, SipCounters, TableSizes, TimerKey, Transport};
use super::wire::{StreamFramer, MAX_DATAGRAM_BYTES};

/// Most TCP connections held at once by default (`[sip] max_tcp_connections`); more are
/// closed at once so a flood cannot exhaust memory or file descriptors.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 1024;
/// How long [`SipHandle::stop`] waits for the sockets, the core and the connections to end.
const STOP_LIMIT: Duration = Duration::from_secs(5);
/// How long a closing TCP connection may take to send the replies still queued for it.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);
/// A TCP peer that leaves a message half-sent for this long is disconnected.
const PARTIAL_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// A TCP connection with no traffic at all for this long is closed.
const IDLE_FLOW_TIMEOUT: Duration = Duration::from_secs(3600);
/// Datagrams queued for the core; beyond this, overload drops them (UDP peers retransmit).
const INPUT_QUEUE: usize = 8192;
/// Longest a BYE's final answer waits for the call's end to be stored (a stalled database
/// must not leave the other side retransmitting its BYE).
const HOLD_LIMIT: Duration = Duration::from_secs(2);
/// How long a stored end is remembered for a BYE answer that comes after it.
const STORED_MEMORY: Duration = Duration::from_secs(30);

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
}

enum CoreMsg {
    Input(Input),
    /// The reader of a flow ended: drop its writer after queued replies, then tell the core.
    FlowEnded(u64),
    Status(oneshot::Sender<SipStatus>),
}

struct Flows {
    writers: HashMap<u64, (SocketAddr, mpsc::UnboundedSender<Bytes>)>,
    limits: Arc<FlowLimits>,
}

/// What every TCP connection shares: the cap on how many are open, the stop signal, and the
/// tracker that [`SipHandle::stop`] waits on.
struct FlowLimits {
    permits: Arc<Semaphore>,
    refused: AtomicU64,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// A running SIP adapter.
pub struct SipHandle {
    /// The bound address (port 0 resolved).
    pub local: SocketAddr,
    tx: mpsc::Sender<CoreMsg>,
    stop: CancellationToken,
    tasks: TaskTracker,
    critical: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
}

impl SipHandle {
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
            .send(CoreMsg::Input(Input::DisableOperators(names)))
            .await;
    }

    /// Stops taking new calls: from now on a new INVITE gets 503 with Retry-After, while the
    /// calls in progress go on to their end.
    pub async fn drain(&self) {
        let _ = self.tx.send(CoreMsg::Input(Input::Drain)).await;
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

/// Binds UDP and TCP on `addr` (the same port for both) and starts the adapter, holding at
/// most `max_tcp` TCP connections; it runs until `stop` is cancelled.
pub async fn start<F>(
    addr: SocketAddr,
    build: F,
    events: CallEvents,
    counters: Arc<SipCounters>,
    max_tcp: usize,
    stop: CancellationToken,
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
    let limits = Arc::new(FlowLimits {
        permits: Arc::new(Semaphore::new(max_tcp)),
        refused: AtomicU64::new(0),
        stop: stop.clone(),
        tasks: tracker.clone(),
    });
    let flows = Arc::new(Mutex::new(Flows {
        writers: HashMap::new(),
        limits,
    }));
    let next_flow = Arc::new(AtomicU64::new(1));
    let overload = Arc::new(AtomicU64::new(0));

    let mut tasks = Vec::new();
    tasks.push((
        "SIP UDP reader",
        tracker.spawn(udp_reader(
            udp.clone(),
            tx.clone(),
            overload.clone(),
            stop.clone(),
        )),
    ));
    tasks.push((
        "SIP TCP acceptor",
        tracker.spawn(tcp_acceptor(
            tcp,
            tx.clone(),
            flows.clone(),
            next_flow.clone(),
            stop.clone(),
        )),
    ));
    let stored = events.stored().subscribe();
    let core = CoreLoop {
        log_backlogged: false,
        held: Held::default(),
        proxy,
        udp,
        flows,
        next_flow,
        tx: tx.clone(),
        events,
        counters,
        overload,
        timers: BTreeMap::new(),
        timer_index: HashMap::new(),
        timer_seq: 0,
        local,
    };
    tasks.push(("SIP core", tracker.spawn(core.run(rx, shutdown_rx, stored))));
    tracing::info!(%local, max_tcp, "SIP adapter listening (UDP and TCP)");
    Ok(SipHandle {
        local,
        tx,
        stop,
        tasks: tracker,
        critical: Mutex::new(tasks),
    })
}

/// UDP and TCP on the same port, so one address is the adapter. With port 0 the kernel
/// picks a free UDP port whose TCP twin may be taken: try again with another.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut tries = 0;
    loop {
        let udp = UdpSocket::bind(addr).await?;
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

async fn udp_reader(
    udp: Arc<UdpSocket>,
    tx: mpsc::Sender<CoreMsg>,
    overload: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES + 1];
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return,
            r = udp.recv_from(&mut buf) => r,
        };
        let (n, from) = match received {
            Ok(r) => r,
            // ICMP port-unreachable surfaces here on some systems; it is not fatal.
            Err(e) => {
                tracing::debug!(error = %e, "udp recv error");
                continue;
            }
        };
        if n == 0 || buf[..n].iter().all(|b| b.is_ascii_whitespace()) {
            continue; // keep-alive
        }
        let peer = Peer {
            transport: Transport::Udp,
            addr: from,
            flow: None,
        };
        let input = Input::Datagram(Bytes::copy_from_slice(&buf[..n]), peer);
        if tx.try_send(CoreMsg::Input(input)).is_err() {
            overload.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn tcp_acceptor(
    listener: TcpListener,
    tx: mpsc::Sender<CoreMsg>,
    flows: Arc<Mutex<Flows>>,
    next: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning on it.
                tracing::warn!(error = %e, "SIP TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = next.fetch_add(1, Ordering::Relaxed);
        spawn_flow(stream, from, id, tx.clone(), flows.clone());
    }
}

/// Runs one TCP connection (accepted or opened by us) if the cap allows; else closes it.
fn spawn_flow(
    stream: TcpStream,
    from: SocketAddr,
    id: u64,
    tx: mpsc::Sender<CoreMsg>,
    flows: Arc<Mutex<Flows>>,
) {
    let Ok(limits) = flows.lock().map(|f| f.limits.clone()) else {
        return;
    };
    let Ok(permit) = limits.permits.clone().try_acquire_owned() else {
        // Dropping the stream closes it at once.
        let refused = limits.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if refused.is_power_of_two() {
            tracing::warn!(%from, refused, "too many SIP TCP connections; closing new ones");
        }
        return;
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Bytes>();
    if let Ok(mut f) = flows.lock() {
        f.writers.insert(id, (from, wtx));
    }
    let stop = limits.stop.clone();
    limits.tasks.spawn(async move {
        loop {
            tokio::select! {
                biased;
                b = wrx.recv() => match b {
                    Some(b) => {
                        if writer.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
                () = stop.cancelled() => {
                    // Stopping: send what is already queued (a last reply), then close.
                    let flush = async {
                        while let Ok(b) = wrx.try_recv() {
                            writer.write_all(&b).await?;
                        }
                        Ok::<_, std::io::Error>(())
                    };
                    let _ = tokio::time::timeout(FLUSH_LIMIT, flush).await;
                    break;
                }
            }
        }
        let _ = writer.shutdown().await;
    });
    let stop = limits.stop.clone();
    limits.tasks.spawn(async move {
        // Held while the connection is read: its slot under the cap.
        let _permit = permit;
        let peer = Peer {
            transport: Transport::Tcp,
            addr: from,
            flow: Some(id),
        };
        let mut framer = StreamFramer::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let limit = if framer.pending_bytes() > 0 {
                PARTIAL_MESSAGE_TIMEOUT
            } else {
                IDLE_FLOW_TIMEOUT
            };
            let read = tokio::select! {
                () = stop.cancelled() => break,
                r = tokio::time::timeout(limit, reader.read(&mut buf)) => r,
            };
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            };
            let frames = framer.push(&buf[..n]);
            for m in frames.messages {
                if tx
                    .send(CoreMsg::Input(Input::Message(Box::new(m), peer)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if let Some(e) = frames.error {
                let _ = tx
                    .send(CoreMsg::Input(Input::StreamError(Box::new(e), peer)))
                    .await;
                break;
            }
        }
        let _ = tx.send(CoreMsg::FlowEnded(id)).await;
    });
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
        while let Some((t, _)) = self.stored_order.front() {
            if now.duration_since(*t) < STORED_MEMORY {
                break;
            }
            if let Some((_, old)) = self.stored_order.pop_front() {
                self.stored.remove(&old);
            }
        }
        if self.stored.insert(key.clone()) {
            self.stored_order.push_back((now, key));
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.waiting.values().flatten().map(|(_, _, t)| *t).min()
    }
}

struct CoreLoop {
    /// What the proxy was last told of the call log's backlog.
    log_backlogged: bool,
    held: Held,
    proxy: Proxy,
    udp: Arc<UdpSocket>,
    flows: Arc<Mutex<Flows>>,
    next_flow: Arc<AtomicU64>,
    tx: mpsc::Sender<CoreMsg>,
    events: CallEvents,
    counters: Arc<SipCounters>,
    overload: Arc<AtomicU64>,
    timers: BTreeMap<(Instant, u64), TimerKey>,
    timer_index: HashMap<TimerKey, (Instant, u64)>,
    timer_seq: u64,
    local: SocketAddr,
}

impl CoreLoop {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<CoreMsg>,
        mut shutdown: watch::Receiver<bool>,
        mut stored: broadcast::Receiver<Arc<CallEvent>>,
    ) {
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
                    Some(CoreMsg::Input(input)) => {
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
                        self.execute();
                    }
                    Some(CoreMsg::FlowEnded(id)) => {
                        if let Ok(mut f) = self.flows.lock() {
                            f.writers.remove(&id);
                        }
                        self.proxy.handle_input(Input::FlowClosed(id));
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

    fn status(&self) -> SipStatus {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SipStatus {
            local: self.local.to_string(),
            tables: self.proxy.table_sizes(),
            timers: self.timers.len(),
            tcp_flows: self.flows.lock().map(|f| f.writers.len()).unwrap_or(0),
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
                overload_drops: load(&self.overload),
                tcp_refused: self
                    .flows
                    .lock()
                    .map(|f| load(&f.limits.refused))
                    .unwrap_or(0),
            },
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
                if let Err(e) = self.udp.try_send_to(&bytes, peer.addr) {
                    tracing::debug!(error = %e, to = %peer.addr, "udp send failed");
                }
            }
            Transport::Tcp => {
                let writer = {
                    let Ok(f) = self.flows.lock() else { return };
                    match peer.flow {
                        Some(id) => f.writers.get(&id).map(|(_, w)| w.clone()),
                        None => f
                            .writers
                            .values()
                            .find(|(a, _)| *a == peer.addr)
                            .map(|(_, w)| w.clone()),
                    }
                };
                match writer {
                    Some(w) => {
                        if w.send(bytes).is_err() {
                            if let Some(id) = peer.flow {
                                let _ = self.tx.try_send(CoreMsg::FlowEnded(id));
                            }
                        }
                    }
                    None if peer.flow.is_some() => {
                        // The flow is gone: the binding over it is unreachable now.
                        if let Some(id) = peer.flow {
                            let _ = self.tx.try_send(CoreMsg::FlowEnded(id));
                        }
                    }
                    None => {
                        let (tx, flows, next) =
                            (self.tx.clone(), self.flows.clone(), self.next_flow.clone());
                        tokio::spawn(async move {
                            match tokio::time::timeout(
                                Duration::from_secs(5),
                                TcpStream::connect(peer.addr),
                            )
                            .await
                            {
                                Ok(Ok(stream)) => {
                                    let id = next.fetch_add(1, Ordering::Relaxed);
                                    spawn_flow(stream, peer.addr, id, tx, flows.clone());
                                    if let Ok(f) = flows.lock() {
                                        if let Some((_, w)) = f.writers.get(&id) {
                                            let _ = w.send(bytes);
                                        }
                                    }
                                }
                                _ => tracing::debug!(to = %peer.addr, "tcp connect failed"),
                            }
                        });
                    }
                }
            }
        }
    }
}
