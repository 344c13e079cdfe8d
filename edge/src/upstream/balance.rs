//! Picking a peer of an upstream for each request.

use std::sync::Mutex;

use super::Peer;

/// A load-balancing policy and its state.
#[derive(Debug)]
pub enum Balancer {
    /// nginx's smooth weighted round robin: over any `sum(weights)` requests each peer
    /// gets exactly its weight, interleaved rather than in runs.
    RoundRobin(Mutex<Vec<i64>>),
}

impl Balancer {
    pub fn round_robin(peers: &[Peer]) -> Balancer {
        Balancer::RoundRobin(Mutex::new(vec![0; peers.len()]))
    }

    /// The next peer, or `None` when there are none.
    pub fn pick<'p>(&self, peers: &'p [Peer]) -> Option<&'p Peer> {
        self.pick_index(peers, |_| true).map(|i| &peers[i])
    }

    /// The index of the next peer among those `usable` accepts (nginx skips peers
    /// already tried for the request and peers marked unavailable the same way: they
    /// take no part in the round, their state is left as it was), or `None` when it
    /// accepts none.
    pub fn pick_index(
        &self,
        peers: &[Peer],
        mut usable: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        match self {
            Balancer::RoundRobin(current) => {
                let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
                if current.len() != peers.len() {
                    *current = vec![0; peers.len()];
                }
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, peer) in peers.iter().enumerate() {
                    if !usable(i) {
                        continue;
                    }
                    let w = i64::from(peer.weight);
                    current[i] += w;
                    total += w;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                let b = best?;
                current[b] -= total;
                Some(b)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(spec: &[(u16, u32)]) -> Vec<Peer> {
        spec.iter()
            .map(|&(p, weight)| Peer {
                weight,
                ..Peer::new(([127, 0, 0, 1], p).into())
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin() {
        let peers = peers(&[(1, 5), (2, 1), (3, 1)]);
        let b = Balancer::round_robin(&peers);
        let picks: Vec<u16> = (0..7)
            .map(|_| b.pick(&peers).unwrap().addr.port())
            .collect();
        // nginx's documented sequence for weights 5, 1, 1.
        assert_eq!(picks, [1, 1, 2, 1, 3, 1, 1]);
        assert!(b.pick(&[]).is_none());
    }

    #[test]
    fn skipped_peers_take_no_part() {
        let peers = peers(&[(1, 1), (2, 1), (3, 1)]);
        let b = Balancer::round_robin(&peers);
        let picks: Vec<usize> = (0..4)
            .map(|_| b.pick_index(&peers, |i| i != 1).unwrap())
            .collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(b.pick_index(&peers, |_| false), None);
    }
}
