//! Smooth weighted round robin, as nginx does it.
//!
//! For weights 5:1:1 plain weighted round robin sends `a a a a a b c`; the smooth variant sends
//! `a a b a c a a`, spreading each server's share evenly over the cycle. Each step adds every
//! server's weight to its running score, picks the highest score (the first one on ties) and
//! subtracts the total weight from the winner.
//!
//! The sequence only depends on the weights, so for ordinary weight totals it is computed once,
//! when the snapshot is compiled, and a request only advances a cursor: no lock and no
//! arithmetic on the request path. Weights are first divided by their greatest common divisor;
//! if the cycle is still longer than [`MAX_CYCLE`], the scores are kept live behind a mutex.
//!
//! Each worker thread walks the cycle with its own cursor, on its own cache line: workers never
//! write a line another worker reads, and each sends its requests in exactly the smooth order,
//! so the shares hold per worker and therefore overall. (One shared cursor cost every request a
//! contended atomic read-modify-write, its cache line bouncing between cores.) Threads that are
//! not workers (the UDP thread, the admin API's explain) share one more cursor.
//!
//! A reload that leaves a balancer's cycle as it was hands the new balancer the old one's
//! cursors ([`SmoothWeighted::continuing`]): the sequence goes on where it was. Starting every
//! reload at the top of the cycle would give its first servers more than their share wherever
//! reloads come often (a Docker stack changing elsewhere) and traffic is light.
//!
//! A pick steps over servers that cannot take the request (ejected, already tried), but never
//! more than a few times the number of servers: when most of a long cycle belongs to unusable
//! servers, it takes the first usable server in index order from a rotating start instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Longest precomputed cycle (entries); longer cycles fall back to live scores.
pub const MAX_CYCLE: u64 = 16_384;

/// A smooth weighted round robin over server indices.
#[derive(Debug)]
pub struct SmoothWeighted {
    schedule: Schedule,
    /// One per lane (see [`crate::upstream::current_lane`]); a lane beyond them wraps around.
    /// Shared with the balancer of the previous snapshot when the cycle is the same.
    cursors: Arc<[Cursor]>,
    /// The servers with a positive weight, in index order.
    weighted: Box<[u32]>,
}

/// A cursor alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Cursor(AtomicUsize);

/// The number of cursors a balancer gets: one per worker and one for the other threads. Only
/// grows (tests start several servers with different worker counts in one process).
static LANES: AtomicUsize = AtomicUsize::new(2);

/// Tells balancers compiled from now on that `workers` worker threads pick.
pub fn set_workers(workers: usize) {
    LANES.fetch_max(workers + 1, Ordering::Relaxed);
}

#[derive(Debug)]
enum Schedule {
    /// No server has a positive weight.
    Empty,
    /// The whole cycle, precomputed.
    Cycle(Box<[u32]>),
    /// Live scores for very long cycles.
    Live(Mutex<Live>),
}

#[derive(Debug)]
struct Live {
    weights: Vec<i64>,
    scores: Vec<i64>,
    total: i64,
}

impl Live {
    fn step(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.scores[i] += self.weights[i];
            if self.scores[i] > self.scores[best] {
                best = i;
            }
        }
        self.scores[best] -= self.total;
        best
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl SmoothWeighted {
    /// A balancer over `weights.len()` servers; a weight of 0 takes no traffic.
    pub fn new(weights: &[u32]) -> Self {
        let divisor = weights.iter().filter(|w| **w > 0).fold(0u64, |g, w| gcd(g, u64::from(*w)));
        let schedule = if divisor == 0 {
            Schedule::Empty
        } else {
            let weights: Vec<i64> = weights.iter().map(|w| (u64::from(*w) / divisor) as i64).collect();
            let total: i64 = weights.iter().sum();
            let mut live = Live {
                scores: vec![0; weights.len()],
                weights,
                total,
            };
            if total as u64 <= MAX_CYCLE {
                Schedule::Cycle((0..total).map(|_| live.step() as u32).collect())
            } else {
                Schedule::Live(Mutex::new(live))
            }
        };
        let lanes = LANES.load(Ordering::Relaxed);
        Self {
            schedule,
            cursors: (0..lanes).map(|_| Cursor::default()).collect(),
            weighted: (0..weights.len() as u32).filter(|i| weights[*i as usize] > 0).collect(),
        }
    }

    /// [`SmoothWeighted::new`], going on with `previous`'s cursors (the balancer this one replaces
    /// in a reload) when the cycle is the same: the workers keep their places in it.
    pub fn continuing(weights: &[u32], previous: Option<&SmoothWeighted>) -> Self {
        let mut balancer = Self::new(weights);
        if let Some(previous) = previous {
            let same_cycle = match (&balancer.schedule, &previous.schedule) {
                (Schedule::Cycle(new), Schedule::Cycle(old)) => new == old,
                _ => false,
            };
            if same_cycle && balancer.weighted == previous.weighted && balancer.cursors.len() == previous.cursors.len() {
                balancer.cursors = previous.cursors.clone();
            }
        }
        balancer
    }

    /// The calling thread's cursor.
    fn cursor(&self) -> &AtomicUsize {
        &self.cursors[crate::upstream::current_lane() % self.cursors.len()].0
    }

    /// True when no server can be picked.
    pub fn is_empty(&self) -> bool {
        matches!(self.schedule, Schedule::Empty)
    }

    /// The index [`SmoothWeighted::pick`] would return next for `usable`, without advancing
    /// (for the explain API; another request may take it first).
    pub fn peek(&self, mut usable: impl FnMut(usize) -> bool) -> Option<usize> {
        match &self.schedule {
            Schedule::Empty => None,
            Schedule::Cycle(cycle) => {
                let start = self.cursor().load(Ordering::Relaxed);
                let walk = self.walk(cycle.len());
                (0..walk)
                    .map(|k| cycle[(start + k) % cycle.len()] as usize)
                    .find(|i| usable(*i))
                    .or_else(|| self.scan(start + walk, &mut usable))
            }
            Schedule::Live(live) => {
                let live = live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut copy = Live {
                    weights: live.weights.clone(),
                    scores: live.scores.clone(),
                    total: live.total,
                };
                let n = copy.total as usize;
                (0..n.max(1)).map(|_| copy.step()).find(|i| usable(*i))
            }
        }
    }

    /// The next server index whose `usable` is true, or `None` when there is none. Unusable
    /// servers are stepped over, so their share goes to whoever follows them in the cycle.
    pub fn pick(&self, mut usable: impl FnMut(usize) -> bool) -> Option<usize> {
        match &self.schedule {
            Schedule::Empty => None,
            Schedule::Cycle(cycle) => {
                // Stepping over an unusable server advances the cursor too, so its share is
                // spread over the others instead of all going to the one after it. Only this
                // lane's thread writes the cursor (a non-worker thread sharing lane 0 with
                // another at worst repeats a pick), so a load and a store do.
                let cursor = self.cursor();
                let start = cursor.load(Ordering::Relaxed);
                let walk = self.walk(cycle.len());
                for k in 0..walk {
                    let i = cycle[(start + k) % cycle.len()] as usize;
                    if usable(i) {
                        cursor.store(start.wrapping_add(k + 1), Ordering::Relaxed);
                        return Some(i);
                    }
                }
                cursor.store(start.wrapping_add(walk), Ordering::Relaxed);
                self.scan(start + walk, &mut usable)
            }
            Schedule::Live(live) => {
                // Invariant: the lock is only held for one step, never across a panic-prone call.
                let mut live = live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let n = live.total as usize;
                (0..n.max(1)).map(|_| live.step()).find(|i| usable(*i))
            }
        }
    }
}

impl SmoothWeighted {
    /// How many cycle entries a pick looks at before [`SmoothWeighted::scan`].
    fn walk(&self, cycle: usize) -> usize {
        cycle.min(4 * self.weighted.len().max(4))
    }

    /// The first usable server with a weight, in index order from the `from`th (mod their
    /// count): the bounded end of a pick in a cycle that is mostly unusable servers.
    fn scan(&self, from: usize, usable: &mut impl FnMut(usize) -> bool) -> Option<usize> {
        let n = self.weighted.len();
        (0..n).map(|k| self.weighted[(from + k) % n] as usize).find(|i| usable(*i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(lb: &SmoothWeighted, n: usize) -> Vec<usize> {
        (0..n).map(|_| lb.pick(|_| true).unwrap()).collect()
    }

    fn counts(picks: &[usize], servers: usize) -> Vec<usize> {
        let mut c = vec![0; servers];
        for p in picks {
            c[*p] += 1;
        }
        c
    }

    #[test]
    fn equal_weights_alternate_exactly() {
        let lb = SmoothWeighted::new(&[1, 1, 1]);
        assert_eq!(take(&lb, 6), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(counts(&take(&lb, 300), 3), vec![100, 100, 100]);
    }

    #[test]
    fn the_nginx_sequence_for_5_1_1() {
        let lb = SmoothWeighted::new(&[5, 1, 1]);
        assert_eq!(take(&lb, 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_2_1_1_split_150_75_75() {
        let lb = SmoothWeighted::new(&[2, 1, 1]);
        assert_eq!(counts(&take(&lb, 300), 3), vec![150, 75, 75]);
        assert_eq!(take(&lb, 4), vec![0, 1, 2, 0], "nginx's smooth order, not 0 0 1 2");
    }

    #[test]
    fn peek_shows_the_next_pick_without_taking_it() {
        let lb = SmoothWeighted::new(&[1, 1, 1]);
        assert_eq!(lb.peek(|_| true), Some(0));
        assert_eq!(lb.peek(|_| true), Some(0));
        assert_eq!(lb.pick(|_| true), Some(0));
        assert_eq!(lb.peek(|i| i != 1), Some(2));
    }

    #[test]
    fn zero_weights_take_nothing_and_all_zero_is_empty() {
        let lb = SmoothWeighted::new(&[0, 3, 0]);
        assert!(take(&lb, 10).iter().all(|i| *i == 1));
        assert!(SmoothWeighted::new(&[0, 0]).is_empty());
        assert!(SmoothWeighted::new(&[]).pick(|_| true).is_none());
    }

    #[test]
    fn unusable_servers_are_stepped_over() {
        let lb = SmoothWeighted::new(&[1, 1, 1]);
        let picks: Vec<usize> = (0..6).map(|_| lb.pick(|i| i != 1).unwrap()).collect();
        assert!(!picks.contains(&1));
        assert_eq!(counts(&picks, 3), vec![3, 0, 3], "the skipped share is spread evenly");
        assert!(lb.pick(|_| false).is_none());
    }

    #[test]
    fn a_pick_in_a_cycle_of_unusable_servers_is_bounded() {
        // 1,000 of the 1,001 entries belong to server 0; with it out, a walk of the cycle would
        // ask up to 1,000 times.
        let lb = SmoothWeighted::new(&[1000, 0, 1]);
        for _ in 0..50 {
            let mut asked = 0;
            let pick = lb.pick(|i| {
                asked += 1;
                i != 0
            });
            assert_eq!(pick, Some(2), "server 1 has no weight, server 0 is out");
            assert!(asked <= 16 + 2, "asked {asked} times");
        }
        assert_eq!(lb.peek(|i| i == 2), Some(2));
    }

    #[test]
    fn each_worker_walks_the_smooth_sequence_with_its_own_cursor() {
        set_workers(2);
        let lb = std::sync::Arc::new(SmoothWeighted::new(&[5, 1, 1]));
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let lb = lb.clone();
                std::thread::spawn(move || {
                    crate::upstream::enter_worker(w);
                    take(&lb, 14)
                })
            })
            .collect();
        for worker in workers {
            let picks = worker.join().expect("a worker thread");
            assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0].repeat(2), "nginx's order in each worker");
        }
    }

    #[test]
    fn huge_weight_totals_use_live_scores_with_the_same_split() {
        let lb = SmoothWeighted::new(&[10_000, 9_999, 1]);
        assert!(matches!(lb.schedule, Schedule::Live(_)));
        let c = counts(&take(&lb, 20_000), 3);
        assert_eq!(c, vec![10_000, 9_999, 1]);
        let precomputed = SmoothWeighted::new(&[4, 2, 2]);
        assert_eq!(take(&precomputed, 4), vec![0, 1, 2, 0], "gcd reduction keeps the sequence of 2:1:1");
    }
}
