//! The simulated link between client and server, without I/O.
//!
//! [`Network`] decides, for each UDP datagram and at a given time since the start of the
//! run, whether it is dropped or forwarded (and when it arrives), and corrupts it in
//! place when the scenario says so. It models what the QUIC network simulator's ns-3
//! scenarios do (`simple-p2p`, `drop-rate`, `corrupt-rate`, `droplist`, `blackhole`,
//! `rebind`): a one-way delay, a bottleneck of a given rate with a drop-tail queue of
//! so many packets, random loss or corruption with a cap on consecutive events, the
//! loss of chosen packets, blackout windows, and the schedule of NAT rebindings. All
//! randomness comes from a seeded xorshift generator, so a run is reproducible and the
//! model is unit-tested deterministically.

use std::collections::VecDeque;
use std::time::Duration;

/// Which way a datagram travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the client to the server.
    ToServer = 0,
    /// From the server to the client.
    ToClient = 1,
}

/// What the network does with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it at this time since the start (the payload may have been corrupted).
    Forward { at: Duration, corrupted: bool },
    /// Lose it.
    Drop(DropReason),
}

/// Why a datagram was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Its index is on the droplist.
    Droplist,
    /// It fell into a blackhole window.
    Blackhole,
    /// Random loss.
    Random,
    /// The bottleneck's queue was full.
    QueueFull,
}

/// A per-direction random event (loss or corruption): percent and burst cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RandomEvents {
    /// Probability in percent (0..=100).
    pub rate: u8,
    /// At most this many events in a row (0: no cap).
    pub burst: u32,
}

/// NAT rebinding schedule for the client's address as the server sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebinding {
    /// The first rebinding, since the start.
    pub first: Duration,
    /// Then every so often.
    pub every: Duration,
    /// Change the address too, not only the port.
    pub addr: bool,
}

/// Everything a testcase's scenario sets; both directions are symmetric except for
/// the random events and the droplists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// One-way delay.
    pub delay: Duration,
    /// Bottleneck rate in bits per second (0: unlimited).
    pub bandwidth_bps: u64,
    /// Drop-tail queue length in packets (0: unlimited).
    pub queue: usize,
    /// Random loss, indexed by [`Dir`].
    pub drop: [RandomEvents; 2],
    /// Random corruption, indexed by [`Dir`].
    pub corrupt: [RandomEvents; 2],
    /// 1-based indices of datagrams to lose, indexed by [`Dir`].
    pub droplist: [Vec<u64>; 2],
    /// The link works for `.0`, then drops everything for `.1` (once).
    pub blackhole: Option<(Duration, Duration)>,
    /// NAT rebinding of the client's side.
    pub rebind: Option<Rebinding>,
    /// A [`CrossTraffic`] flow competes for the bottleneck towards the client.
    pub cross_traffic: bool,
}

impl Default for Scenario {
    /// The runner's `simple-p2p --delay=15ms --bandwidth=10Mbps --queue=25`.
    fn default() -> Self {
        Scenario {
            delay: Duration::from_millis(15),
            bandwidth_bps: 10_000_000,
            queue: 25,
            drop: Default::default(),
            corrupt: Default::default(),
            droplist: Default::default(),
            blackhole: None,
            rebind: None,
            cross_traffic: false,
        }
    }
}

/// xorshift64*: small, fast, good enough to pick packets to lose; seeded for replay.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced, xorshift must not start at 0).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u8) -> bool {
        percent > 0 && self.below(100) < u64::from(percent)
    }

    /// Fills a buffer with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// State of one direction.
#[derive(Debug, Default)]
struct Link {
    /// Datagrams seen so far (for the droplist).
    count: u64,
    /// Consecutive random drops / corruptions.
    drops_in_row: u32,
    corrupt_in_row: u32,
    /// Departure times of the datagrams in the bottleneck queue, oldest first.
    queue: VecDeque<Duration>,
}

/// The link model; see the module documentation.
#[derive(Debug)]
pub struct Network {
    scenario: Scenario,
    rng: Rng,
    links: [Link; 2],
    next_rebind: Option<Duration>,
}

/// Counters for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub forwarded: u64,
    pub dropped: u64,
    pub corrupted: u64,
}

impl Network {
    /// A network for a scenario with a seed.
    pub fn new(scenario: Scenario, seed: u64) -> Self {
        let next_rebind = scenario.rebind.map(|r| r.first);
        Network {
            scenario,
            rng: Rng::new(seed),
            links: Default::default(),
            next_rebind,
        }
    }

    /// The scenario this network applies.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Decides the fate of one datagram entering the link at `now`; may corrupt
    /// `payload` (one byte among its first 50, changed to a different value).
    pub fn packet(&mut self, dir: Dir, now: Duration, payload: &mut [u8]) -> Verdict {
        let s = &self.scenario;
        let link = &mut self.links[dir as usize];
        link.count += 1;
        if s.droplist[dir as usize].contains(&link.count) {
            return Verdict::Drop(DropReason::Droplist);
        }
        if let Some((on, off)) = s.blackhole {
            if now >= on && now < on + off {
                return Verdict::Drop(DropReason::Blackhole);
            }
        }
        let drop = s.drop[dir as usize];
        if self.rng.chance(drop.rate) && (drop.burst == 0 || link.drops_in_row < drop.burst) {
            link.drops_in_row += 1;
            return Verdict::Drop(DropReason::Random);
        }
        link.drops_in_row = 0;

        let Some(departure) = self.enqueue(dir, now, payload.len()) else {
            return Verdict::Drop(DropReason::QueueFull);
        };
        let s = &self.scenario;
        let link = &mut self.links[dir as usize];

        let corrupt = s.corrupt[dir as usize];
        let mut corrupted = false;
        if !payload.is_empty()
            && self.rng.chance(corrupt.rate)
            && (corrupt.burst == 0 || link.corrupt_in_row < corrupt.burst)
        {
            link.corrupt_in_row += 1;
            let i = self.rng.below(payload.len().min(50) as u64) as usize;
            // XOR with a non-zero value always changes the byte.
            let x = (self.rng.below(255) + 1) as u8;
            if let Some(b) = payload.get_mut(i) {
                *b ^= x;
                corrupted = true;
            }
        } else {
            link.corrupt_in_row = 0;
        }
        Verdict::Forward {
            at: departure + s.delay,
            corrupted,
        }
    }

    /// The bottleneck: serialization at the link rate behind what is queued; the
    /// departure time, or `None` when the drop-tail queue is full.
    fn enqueue(&mut self, dir: Dir, now: Duration, len: usize) -> Option<Duration> {
        let s = &self.scenario;
        let link = &mut self.links[dir as usize];
        while link.queue.front().is_some_and(|&t| t <= now) {
            link.queue.pop_front();
        }
        if s.queue > 0 && link.queue.len() >= s.queue {
            return None;
        }
        // UDP + IPv4 headers count too; a rate of 0 is an unlimited link.
        let bits = (len as u64 + 28) * 8;
        let tx = Duration::from_nanos(
            bits.saturating_mul(1_000_000_000)
                .checked_div(s.bandwidth_bps)
                .unwrap_or(0),
        );
        let departure = link.queue.back().copied().unwrap_or(now).max(now) + tx;
        link.queue.push_back(departure);
        Some(departure)
    }

    /// One packet of competing traffic ([`CrossTraffic`]): it takes its turn in the
    /// bottleneck like a datagram of the connection and is never delivered. False when
    /// the full queue dropped it.
    pub fn cross_packet(&mut self, dir: Dir, now: Duration, len: usize) -> bool {
        self.enqueue(dir, now, len).is_some()
    }

    /// How long a packet entering the bottleneck at `now` would wait in its queue.
    pub fn queue_delay(&self, dir: Dir, now: Duration) -> Duration {
        let back = self.links[dir as usize].queue.back().copied();
        back.map_or(Duration::ZERO, |t| t.saturating_sub(now))
    }

    /// True (once per due rebinding) when the client's NAT binding must change at `now`.
    pub fn rebind_due(&mut self, now: Duration) -> bool {
        match (self.next_rebind, self.scenario.rebind) {
            (Some(t), Some(r)) if now >= t => {
                self.next_rebind = Some(now + r.every.max(Duration::from_millis(1)));
                true
            }
            _ => false,
        }
    }
}

/// A competing flow for crosstraffic, in place of the official runner's iperf TCP
/// connection: a window of packets per round trip, increased by one per loss-free round
/// and halved after a round with a loss (TCP Reno's congestion avoidance), so it fights
/// for the bottleneck and yields to it like a TCP flow.
#[derive(Clone, Debug)]
pub struct CrossTraffic {
    /// The window in packets.
    pub cwnd: u32,
    lost_this_round: bool,
}

impl Default for CrossTraffic {
    fn default() -> Self {
        CrossTraffic {
            cwnd: 10,
            lost_this_round: false,
        }
    }
}

impl CrossTraffic {
    /// The size of each packet (a full Ethernet frame's IP payload, minus IP and UDP).
    pub const PACKET: usize = 1472;

    /// Records the fate of one packet.
    pub fn sent(&mut self, delivered: bool) {
        self.lost_this_round |= !delivered;
    }

    /// Ends a round trip: the window for the next one.
    pub fn end_round(&mut self) -> u32 {
        self.cwnd = if self.lost_this_round {
            (self.cwnd / 2).max(2)
        } else {
            self.cwnd + 1
        };
        self.lost_this_round = false;
        self.cwnd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ideal() -> Scenario {
        Scenario {
            bandwidth_bps: 0,
            queue: 0,
            ..Scenario::default()
        }
    }

    #[test]
    fn delay_only_forwards_after_the_delay() {
        let mut n = Network::new(ideal(), 1);
        let mut p = [0u8; 100];
        assert_eq!(
            n.packet(Dir::ToServer, 10 * MS, &mut p),
            Verdict::Forward {
                at: 25 * MS,
                corrupted: false
            }
        );
        assert_eq!(p, [0u8; 100]);
    }

    #[test]
    fn rate_serializes_and_queue_drops_the_tail() {
        // 1 Mbit/s, 1222 + 28 bytes = 10 ms per packet, 2 packets of queue.
        let s = Scenario {
            bandwidth_bps: 1_000_000,
            queue: 2,
            delay: Duration::ZERO,
            ..ideal()
        };
        let mut n = Network::new(s, 1);
        let mut p = vec![0u8; 1222];
        let at = |v| match v {
            Verdict::Forward { at, .. } => at,
            Verdict::Drop(r) => panic!("dropped: {r:?}"),
        };
        assert_eq!(at(n.packet(Dir::ToServer, Duration::ZERO, &mut p)), 10 * MS);
        assert_eq!(at(n.packet(Dir::ToServer, Duration::ZERO, &mut p)), 20 * MS);
        assert_eq!(
            n.packet(Dir::ToServer, Duration::ZERO, &mut p),
            Verdict::Drop(DropReason::QueueFull)
        );
        // The other direction has its own queue.
        assert_eq!(at(n.packet(Dir::ToClient, Duration::ZERO, &mut p)), 10 * MS);
        // Once the first has left, there is room again.
        assert_eq!(at(n.packet(Dir::ToServer, 10 * MS, &mut p)), 30 * MS);
    }

    #[test]
    fn droplist_counts_per_direction_from_one() {
        let s = Scenario {
            droplist: [vec![2, 3], vec![1]],
            ..ideal()
        };
        let mut n = Network::new(s, 1);
        let mut p = [0u8; 10];
        let fates: Vec<bool> = (0..4)
            .map(|_| matches!(n.packet(Dir::ToServer, MS, &mut p), Verdict::Forward { .. }))
            .collect();
        assert_eq!(fates, [true, false, false, true]);
        assert_eq!(
            n.packet(Dir::ToClient, MS, &mut p),
            Verdict::Drop(DropReason::Droplist)
        );
    }

    #[test]
    fn random_loss_respects_rate_and_burst() {
        let ev = RandomEvents { rate: 30, burst: 3 };
        let s = Scenario {
            drop: [ev, RandomEvents::default()],
            ..ideal()
        };
        let mut n = Network::new(s, 42);
        let mut p = [0u8; 10];
        let (mut dropped, mut run, mut max_run) = (0, 0, 0);
        for _ in 0..10_000 {
            if let Verdict::Drop(_) = n.packet(Dir::ToServer, MS, &mut p) {
                dropped += 1;
                run += 1;
                max_run = max_run.max(run);
            } else {
                run = 0;
            }
            assert!(matches!(
                n.packet(Dir::ToClient, MS, &mut p),
                Verdict::Forward { .. }
            ));
        }
        assert!(max_run <= 3, "burst of {max_run}");
        assert!((2_500..3_300).contains(&dropped), "{dropped} dropped");
        // Same seed, same losses.
        let mut a = Network::new(n.scenario().clone(), 7);
        let mut b = Network::new(n.scenario().clone(), 7);
        for _ in 0..100 {
            assert_eq!(
                a.packet(Dir::ToServer, MS, &mut p),
                b.packet(Dir::ToServer, MS, &mut p)
            );
        }
    }

    #[test]
    fn corruption_changes_one_byte_in_the_first_50() {
        let ev = RandomEvents {
            rate: 100,
            burst: 0,
        };
        let s = Scenario {
            corrupt: [ev, ev],
            ..ideal()
        };
        let mut n = Network::new(s, 3);
        for _ in 0..200 {
            let mut p = vec![0u8; 1200];
            assert!(matches!(
                n.packet(Dir::ToClient, MS, &mut p),
                Verdict::Forward {
                    corrupted: true,
                    ..
                }
            ));
            let changed: Vec<usize> = (0..p.len()).filter(|&i| p[i] != 0).collect();
            assert_eq!(changed.len(), 1);
            assert!(changed[0] < 50);
        }
        let mut short = vec![0u8; 5];
        n.packet(Dir::ToServer, MS, &mut short);
        assert_eq!(short.iter().filter(|&&b| b != 0).count(), 1);
    }

    #[test]
    fn blackhole_drops_inside_the_window_only() {
        let s = Scenario {
            blackhole: Some((100 * MS, 50 * MS)),
            ..ideal()
        };
        let mut n = Network::new(s, 1);
        let mut p = [0u8; 10];
        assert!(matches!(
            n.packet(Dir::ToServer, 99 * MS, &mut p),
            Verdict::Forward { .. }
        ));
        assert_eq!(
            n.packet(Dir::ToClient, 100 * MS, &mut p),
            Verdict::Drop(DropReason::Blackhole)
        );
        assert_eq!(
            n.packet(Dir::ToServer, 149 * MS, &mut p),
            Verdict::Drop(DropReason::Blackhole)
        );
        assert!(matches!(
            n.packet(Dir::ToServer, 150 * MS, &mut p),
            Verdict::Forward { .. }
        ));
    }

    #[test]
    fn rebinding_is_due_on_schedule() {
        let r = Rebinding {
            first: 1000 * MS,
            every: 5000 * MS,
            addr: false,
        };
        let mut n = Network::new(
            Scenario {
                rebind: Some(r),
                ..ideal()
            },
            1,
        );
        assert!(!n.rebind_due(999 * MS));
        assert!(n.rebind_due(1000 * MS));
        assert!(!n.rebind_due(1001 * MS));
        assert!(!n.rebind_due(5999 * MS));
        assert!(n.rebind_due(6000 * MS));
    }

    #[test]
    fn cross_traffic_fills_the_queue_and_backs_off() {
        // 1 Mbit/s, 1500 bytes = 12 ms a packet, 2 packets of queue.
        let s = Scenario {
            bandwidth_bps: 1_000_000,
            queue: 2,
            ..ideal()
        };
        let mut n = Network::new(s, 1);
        let mut flow = CrossTraffic::default();
        for _ in 0..3 {
            let ok = n.cross_packet(Dir::ToClient, Duration::ZERO, CrossTraffic::PACKET);
            flow.sent(ok);
        }
        // The third did not fit: the window halves, and the connection's own datagram
        // waits behind the two that did.
        assert_eq!(flow.end_round(), 5);
        assert_eq!(n.queue_delay(Dir::ToClient, Duration::ZERO), 24 * MS);
        assert_eq!(flow.end_round(), 6);
        let mut p = [0u8; 10];
        assert_eq!(
            n.packet(Dir::ToClient, Duration::ZERO, &mut p),
            Verdict::Drop(DropReason::QueueFull)
        );
        assert!(matches!(
            n.packet(Dir::ToServer, Duration::ZERO, &mut p),
            Verdict::Forward { .. }
        ));
    }
}
