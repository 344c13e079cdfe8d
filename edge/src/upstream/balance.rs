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
        match self {
            Balancer::RoundRobin(current) => {
                let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
                if current.len() != peers.len() {
                    *current = vec![0; peers.len()];
                }
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, peer) in peers.iter().enumerate() {
                    let w = i64::from(peer.weight);
                    current[i] += w;
                    total += w;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                let b = best?;
                current[b] -= total;
                peers.get(b)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_weighted_round_robin() {
        let peers: Vec<Peer> = [(1, 5), (2, 1), (3, 1)]
            .iter()
            .map(|&(p, weight)| Peer {
                addr: ([127, 0, 0, 1], p).into(),
                weight,
            })
            .collect();
        let b = Balancer::round_robin(&peers);
        let picks: Vec<u16> = (0..7)
            .map(|_| b.pick(&peers).unwrap().addr.port())
            .collect();
        // nginx's documented sequence for weights 5, 1, 1.
        assert_eq!(picks, [1, 1, 2, 1, 3, 1, 1]);
        assert!(b.pick(&[]).is_none());
    }
}
