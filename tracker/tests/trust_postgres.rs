//! The tests of `trust.rs` again, with the tracker's state in PostgreSQL: each test starts a
//! private server (`initdb` and `postgres` on a free loopback port, see
//! `rivulet_localnet::postgres`), chosen by this binary's name (`rivulet_localnet::test_engine!`).

#[path = "trust.rs"]
mod trust;
