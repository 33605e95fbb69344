//! The engine's per-process memory: parent links and executables (for `parent.path` and
//! process-tree chains), accumulated risk (`process.risk`), and recent rule hits (for
//! `requires` chains). Bounded: a process is forgotten at its `process_exit`, and when the
//! table is full the least recently used quarter is evicted.

use std::collections::HashMap;

use super::eval::FxBuild;

/// Processes remembered at most.
pub const DEFAULT_CAPACITY: usize = 16_384;
/// Recent hits remembered per process (the oldest is replaced).
const HITS_PER_PROCESS: usize = 16;
/// How far up the tree a `process_tree` chain looks.
pub const MAX_TREE_DEPTH: usize = 16;
/// Accumulated risk halves every this many nanoseconds without new matches (10 minutes).
pub const RISK_HALF_LIFE_NS: f64 = 600e9;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index of the rule in the rule set the hit was recorded under.
    pub rule: u32,
    pub at_ns: i64,
}

#[derive(Clone, Debug, Default)]
struct Proc {
    ppid: u32,
    exe: Option<Box<str>>,
    risk: f64,
    risk_at_ns: i64,
    hits: Vec<Hit>,
    last_used: u64,
}

#[derive(Clone, Debug)]
pub struct ProcTable {
    procs: HashMap<u32, Proc, FxBuild>,
    capacity: usize,
    clock: u64,
}

impl Default for ProcTable {
    fn default() -> Self {
        ProcTable::new(DEFAULT_CAPACITY)
    }
}

impl ProcTable {
    pub fn new(capacity: usize) -> ProcTable {
        ProcTable {
            procs: HashMap::with_hasher(FxBuild),
            capacity: capacity.max(4),
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    fn entry(&mut self, pid: u32) -> &mut Proc {
        self.clock += 1;
        // The length first: below capacity (nearly always) one hash lookup is enough.
        if self.procs.len() >= self.capacity && !self.procs.contains_key(&pid) {
            self.evict();
        }
        let clock = self.clock;
        let proc = self.procs.entry(pid).or_default();
        proc.last_used = clock;
        proc
    }

    /// Drops the least recently used quarter of the table.
    fn evict(&mut self) {
        let mut ages: Vec<(u64, u32)> = self
            .procs
            .iter()
            .map(|(&pid, p)| (p.last_used, pid))
            .collect();
        let cut = (ages.len() / 4).max(1);
        ages.select_nth_unstable(cut - 1);
        for &(_, pid) in &ages[..cut] {
            self.procs.remove(&pid);
        }
    }

    /// Learns `pid`'s parent and, when given, its executable.
    pub fn observe(&mut self, pid: u32, ppid: u32, exe: Option<&str>) {
        if pid == 0 {
            return;
        }
        let proc = self.entry(pid);
        if ppid != 0 {
            proc.ppid = ppid;
        }
        if let Some(exe) = exe.filter(|e| !e.is_empty())
            && proc.exe.as_deref() != Some(exe)
        {
            proc.exe = Some(exe.into());
        }
    }

    pub fn forget(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    pub fn exe(&self, pid: u32) -> Option<&str> {
        self.procs.get(&pid)?.exe.as_deref()
    }

    pub fn ppid(&self, pid: u32) -> Option<u32> {
        self.procs.get(&pid).map(|p| p.ppid).filter(|&p| p != 0)
    }

    /// Accumulated risk of `pid` at time `now_ns` (decayed since its last match).
    pub fn risk(&self, pid: u32, now_ns: i64) -> f64 {
        let Some(proc) = self.procs.get(&pid) else {
            return 0.0;
        };
        decayed(proc.risk, proc.risk_at_ns, now_ns)
    }

    /// Adds `score` to `pid`'s accumulated risk (capped at 1.0).
    pub fn add_risk(&mut self, pid: u32, score: f64, now_ns: i64) {
        if pid == 0 {
            return;
        }
        let proc = self.entry(pid);
        proc.risk = (decayed(proc.risk, proc.risk_at_ns, now_ns) + score).min(1.0);
        proc.risk_at_ns = proc.risk_at_ns.max(now_ns);
    }

    pub fn record_hit(&mut self, pid: u32, hit: Hit) {
        if pid == 0 {
            return;
        }
        let hits = &mut self.entry(pid).hits;
        if let Some(old) = hits.iter_mut().find(|h| h.rule == hit.rule) {
            old.at_ns = old.at_ns.max(hit.at_ns);
        } else if hits.len() < HITS_PER_PROCESS {
            hits.push(hit);
        } else if let Some(oldest) = hits.iter_mut().min_by_key(|h| h.at_ns) {
            *oldest = hit;
        }
    }

    /// Whether `rule` fired for `pid` at a time within `window_ns` before `now_ns` (hits
    /// slightly in the future, from events delivered out of order, count too).
    pub fn has_hit(&self, pid: u32, rule: u32, now_ns: i64, window_ns: i64) -> bool {
        self.procs.get(&pid).is_some_and(|p| {
            p.hits
                .iter()
                .any(|h| h.rule == rule && now_ns.saturating_sub(h.at_ns) <= window_ns)
        })
    }

    /// Renumbers recorded hits after a rule set change; `map[old]` is the new index, if the
    /// rule still exists.
    pub fn remap_hits(&mut self, map: &[Option<u32>]) {
        for proc in self.procs.values_mut() {
            proc.hits
                .retain_mut(|h| match map.get(h.rule as usize).copied().flatten() {
                    Some(new) => {
                        h.rule = new;
                        true
                    }
                    None => false,
                });
        }
    }
}

fn decayed(risk: f64, at_ns: i64, now_ns: i64) -> f64 {
    if risk == 0.0 || now_ns <= at_ns {
        return risk;
    }
    let elapsed = (now_ns - at_ns) as f64;
    risk * (-elapsed / RISK_HALF_LIFE_NS * std::f64::consts::LN_2).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_executables() {
        let mut t = ProcTable::new(100);
        t.observe(10, 1, Some("/bin/bash"));
        t.observe(11, 10, Some("/bin/bash"));
        assert_eq!(t.exe(11), Some("/bin/bash"));
        assert_eq!(t.ppid(11), Some(10));
        t.observe(11, 10, Some("/tmp/x"));
        assert_eq!(t.exe(11), Some("/tmp/x"));
        assert_eq!(t.exe(10), Some("/bin/bash"));
        t.forget(11);
        assert_eq!(t.exe(11), None);
        assert_eq!(t.ppid(99), None);
    }

    #[test]
    fn risk_accumulates_caps_and_decays() {
        let mut t = ProcTable::new(100);
        t.add_risk(5, 0.4, 0);
        t.add_risk(5, 0.4, 0);
        assert!((t.risk(5, 0) - 0.8).abs() < 1e-9);
        t.add_risk(5, 0.9, 0);
        assert_eq!(t.risk(5, 0), 1.0);
        let half = RISK_HALF_LIFE_NS as i64;
        assert!((t.risk(5, half) - 0.5).abs() < 1e-9);
        assert_eq!(t.risk(6, 0), 0.0);
    }

    #[test]
    fn hits_within_a_window() {
        let mut t = ProcTable::new(100);
        t.record_hit(
            7,
            Hit {
                rule: 3,
                at_ns: 1_000,
            },
        );
        assert!(t.has_hit(7, 3, 1_500, 600));
        assert!(!t.has_hit(7, 3, 1_700, 600));
        assert!(!t.has_hit(7, 4, 1_500, 600));
        t.record_hit(
            7,
            Hit {
                rule: 3,
                at_ns: 1_650,
            },
        );
        assert!(t.has_hit(7, 3, 1_700, 600));
        for rule in 0..40 {
            t.record_hit(
                7,
                Hit {
                    rule,
                    at_ns: 2_000 + i64::from(rule),
                },
            );
        }
        assert!(t.has_hit(7, 39, 2_100, 600));
        t.remap_hits(
            &[None; 39]
                .iter()
                .copied()
                .chain([Some(0)])
                .collect::<Vec<_>>(),
        );
        assert!(t.has_hit(7, 0, 2_100, 600));
        assert!(!t.has_hit(7, 38, 2_100, 600));
    }

    #[test]
    fn bounded_by_capacity() {
        let mut t = ProcTable::new(8);
        for pid in 1..=100 {
            t.observe(pid, 1, None);
            assert!(t.len() <= 8);
        }
        // The most recent ones survive.
        assert_eq!(t.ppid(100), Some(1));
        assert_eq!(t.ppid(2), None);
    }
}
