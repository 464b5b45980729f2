//! The flow-level simulator (`rivulet-bench simulate`) on small populations: its invariants
//! hold (no cache above its upload cap, no viewer given more than it asked for, the lower
//! bound at or below what was achieved), the tracker's placement really carries the load,
//! and churn with crashes costs the origin more than a network whose caches stay.

use rivulet_e2e::simulate::{self, SimConfig};

/// 200 caches and 120 viewers, 50 movies, 20 minutes: a few seconds of simulation.
fn small() -> SimConfig {
    SimConfig {
        caches: 200,
        viewers: 120,
        movies: 50,
        movie_secs: (600.0, 1_800.0),
        minutes: 20.0,
        join_every_secs: 1.0,
        cache_session_mins: 0.0,
        ..SimConfig::default()
    }
}

fn assert_invariants(s: &simulate::SimSummary) {
    let inv = &s.invariants;
    assert!(
        inv.worst_cache_load <= 1.0 + 1e-9,
        "a cache sent {:.3}× its upload cap in one step",
        inv.worst_cache_load
    );
    assert!(
        inv.worst_viewer_excess <= 1e-6,
        "a viewer received {} bytes more than it asked for",
        inv.worst_viewer_excess
    );
    assert!(
        inv.bound_below_achieved,
        "the lower bound exceeds what was achieved"
    );
    assert!(s.lower_bound_share <= s.origin_share_total + 1e-9);
    // Every byte a viewer played came from a cache or the origin.
    let delivered = s.caches_to_viewers_bytes + s.origin_to_viewers_bytes;
    assert!(delivered.abs_diff(s.demand_bytes) <= 2 + s.series.len() as u64);
}

#[test]
fn a_small_network_keeps_every_cap_and_its_caches_carry_most_of_the_demand() {
    let s = simulate::run(small());
    assert_invariants(&s);
    assert!(s.demand_bytes > 0 && s.rounds > 100, "{s:?}");
    // 120 reachable caches of 2–10 Mbit/s (about 680 Mbit/s) against 120 viewers of 2–6
    // Mbit/s (about 400 Mbit/s when all watch): placement must put most of the load on
    // them once they are warm.
    assert!(
        s.origin_share_steady < 0.5,
        "the origin sent {:.0}% of the steady-state demand",
        s.origin_share_steady * 100.0
    );
    assert!(s.caches_to_viewers_bytes > s.origin_to_viewers_bytes);
    assert!(s.start_p95_ms > 0.0 && s.start_p95_ms < 10_000.0);
    // The same seed gives the same run.
    let again = simulate::run(small());
    assert_eq!(again.origin_to_viewers_bytes, s.origin_to_viewers_bytes);
    assert_eq!(again.caches_to_caches_bytes, s.caches_to_caches_bytes);
}

#[test]
fn crashing_caches_cost_the_origin_more_and_are_warmed_from_their_peers() {
    let steady = simulate::run(small());
    let churn = simulate::run(SimConfig {
        // Each cache stays ten minutes on average: 20 replaced per minute, crashing.
        cache_session_mins: 10.0,
        crash: true,
        ..small()
    });
    assert_invariants(&churn);
    assert!(churn.caches_replaced >= 300, "{}", churn.caches_replaced);
    assert!(
        churn.origin_share_total > steady.origin_share_total,
        "churn {:.3} vs steady {:.3}",
        churn.origin_share_total,
        steady.origin_share_total
    );
    // Newcomers fetch indices that survivors hold from those survivors.
    assert!(churn.caches_to_caches_bytes > 0);
}
