//! Data-parallel plumbing that needs no GPU: the torchrun-style environment, the rendezvous
//! that hands rank 0's NCCL unique id to every rank over TCP, and the data sharding.
//!
//! Rendezvous protocol (version 1), all integers little-endian:
//! - rank r > 0 connects to MASTER_ADDR:MASTER_PORT (retrying until the deadline, since rank 0
//!   may start later) and sends `HELLO` = magic `CRIARDZV`, version u32, rank u32, world u32;
//! - rank 0 accepts until every rank 1..world has said hello (duplicates, out-of-range ranks and
//!   world-size mismatches are refused with an error), then sends each `ID` = magic, version,
//!   length u32 (128), the id bytes;
//! - every socket operation has its own timeout (`io_timeout`) and the whole exchange a
//!   deadline (`timeout`); rank 0's timeout error names the ranks that never arrived.

use crate::error::{Result, TrainError};
use crate::rng::Rng;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

pub const ID_BYTES: usize = 128;
const MAGIC: &[u8; 8] = b"CRIARDZV";
const VERSION: u32 = 1;

/// One process's place in a data-parallel job (torchrun's variables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl DistEnv {
    /// From the process environment; `None` when neither RANK nor WORLD_SIZE is set (a plain
    /// single-process run).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// From any variable lookup (tests pass a map).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        if get("RANK").is_none() && get("WORLD_SIZE").is_none() {
            return Ok(None);
        }
        let need = |var: &'static str| {
            get(var).ok_or(TrainError::DistEnv {
                var,
                got: String::new(),
                reason: "not set (RANK or WORLD_SIZE is, so this is a distributed run)".into(),
            })
        };
        let num = |var: &'static str| -> Result<usize> {
            let s = need(var)?;
            s.trim().parse::<usize>().map_err(|_| TrainError::DistEnv {
                var,
                got: s.clone(),
                reason: "not a non-negative integer".into(),
            })
        };
        let world_size = num("WORLD_SIZE")?;
        let rank = num("RANK")?;
        let local_rank = num("LOCAL_RANK")?;
        if world_size == 0 {
            return Err(TrainError::DistEnv {
                var: "WORLD_SIZE",
                got: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        if rank >= world_size {
            return Err(TrainError::DistEnv {
                var: "RANK",
                got: rank.to_string(),
                reason: format!("must be < WORLD_SIZE {world_size}"),
            });
        }
        let master_addr = need("MASTER_ADDR")?;
        if master_addr.trim().is_empty() {
            return Err(TrainError::DistEnv {
                var: "MASTER_ADDR",
                got: master_addr,
                reason: "empty".into(),
            });
        }
        let port_s = need("MASTER_PORT")?;
        let master_port = match port_s.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(TrainError::DistEnv {
                    var: "MASTER_PORT",
                    got: port_s,
                    reason: "must be a TCP port 1..65535".into(),
                });
            }
        };
        Ok(Some(DistEnv {
            rank,
            world_size,
            local_rank,
            master_addr: master_addr.trim().into(),
            master_port,
        }))
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.master_addr, self.master_port)
    }
}

/// Timeouts of one rendezvous.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Deadline for the whole exchange.
    pub timeout: Duration,
    /// Limit for each socket read or write once connected.
    pub io_timeout: Duration,
}

impl Timeouts {
    /// `CRIA_RENDEZVOUS_TIMEOUT_S` (default 300 s); per-operation limit min(30 s, that).
    pub fn from_env() -> Result<Self> {
        let timeout = match std::env::var("CRIA_RENDEZVOUS_TIMEOUT_S") {
            Ok(s) => match s.trim().parse::<f64>() {
                Ok(v) if v > 0.0 && v.is_finite() => Duration::from_secs_f64(v),
                _ => {
                    return Err(TrainError::DistEnv {
                        var: "CRIA_RENDEZVOUS_TIMEOUT_S",
                        got: s,
                        reason: "must be a positive number of seconds".into(),
                    });
                }
            },
            Err(_) => Duration::from_secs(300),
        };
        Ok(Timeouts {
            timeout,
            io_timeout: timeout.min(Duration::from_secs(30)),
        })
    }
}

fn rdzv_err(addr: &str, reason: impl Into<String>) -> TrainError {
    TrainError::Rendezvous {
        addr: addr.into(),
        reason: reason.into(),
    }
}

/// Exchange the NCCL unique id: rank 0 calls `make_id` and serves the result; every rank
/// returns the same 128 bytes.
pub fn rendezvous(
    env: &DistEnv,
    t: Timeouts,
    make_id: impl FnOnce() -> Result<[u8; ID_BYTES]>,
) -> Result<[u8; ID_BYTES]> {
    if env.world_size == 1 {
        return make_id();
    }
    if env.rank == 0 {
        serve(env, t, make_id)
    } else {
        fetch(env, t)
    }
}

fn serve(
    env: &DistEnv,
    t: Timeouts,
    make_id: impl FnOnce() -> Result<[u8; ID_BYTES]>,
) -> Result<[u8; ID_BYTES]> {
    let addr = env.addr();
    let start = Instant::now();
    // Bind every address MASTER_ADDR names; the first that binds serves.
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| rdzv_err(&addr, format!("cannot resolve: {e}")))?
        .collect();
    let listener = TcpListener::bind(&addrs[..])
        .map_err(|e| rdzv_err(&addr, format!("rank 0 cannot listen: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| rdzv_err(&addr, e.to_string()))?;
    let id = make_id()?;
    let mut peers: Vec<Option<TcpStream>> = (0..env.world_size).map(|_| None).collect();
    while peers.iter().skip(1).any(Option::is_none) {
        if start.elapsed() >= t.timeout {
            let missing = (1..env.world_size)
                .filter(|&r| peers[r].is_none())
                .collect();
            return Err(TrainError::RendezvousTimeout {
                addr,
                missing,
                world: env.world_size,
                waited_s: start.elapsed().as_secs_f64(),
            });
        }
        match listener.accept() {
            Ok((mut s, peer)) => {
                s.set_nonblocking(false)
                    .map_err(|e| rdzv_err(&addr, e.to_string()))?;
                s.set_read_timeout(Some(t.io_timeout))
                    .and_then(|_| s.set_write_timeout(Some(t.io_timeout)))
                    .map_err(|e| rdzv_err(&addr, e.to_string()))?;
                let mut hello = [0u8; 20];
                s.read_exact(&mut hello)
                    .map_err(|e| rdzv_err(&addr, format!("reading hello from {peer}: {e}")))?;
                let (rank, world) = parse_hello(&hello)
                    .map_err(|r| rdzv_err(&addr, format!("from {peer}: {r}")))?;
                if world != env.world_size {
                    return Err(rdzv_err(
                        &addr,
                        format!(
                            "rank {rank} at {peer} says WORLD_SIZE {world}, rank 0 has {}",
                            env.world_size
                        ),
                    ));
                }
                if rank == 0 || rank >= env.world_size {
                    return Err(rdzv_err(
                        &addr,
                        format!(
                            "{peer} claims rank {rank}; expected 1..{}",
                            env.world_size - 1
                        ),
                    ));
                }
                if peers[rank].is_some() {
                    return Err(rdzv_err(
                        &addr,
                        format!(
                            "rank {rank} connected twice (second time from {peer}); each RANK must be unique"
                        ),
                    ));
                }
                peers[rank] = Some(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(rdzv_err(&addr, format!("accept: {e}"))),
        }
    }
    let mut msg = Vec::with_capacity(16 + ID_BYTES);
    msg.extend_from_slice(MAGIC);
    msg.extend_from_slice(&VERSION.to_le_bytes());
    msg.extend_from_slice(&(ID_BYTES as u32).to_le_bytes());
    msg.extend_from_slice(&id);
    for (rank, s) in peers.iter_mut().enumerate().skip(1) {
        let s = s.as_mut().expect("every rank connected");
        s.write_all(&msg)
            .and_then(|_| s.flush())
            .map_err(|e| rdzv_err(&addr, format!("sending the id to rank {rank}: {e}")))?;
    }
    Ok(id)
}

fn parse_hello(b: &[u8; 20]) -> std::result::Result<(usize, usize), String> {
    if &b[..8] != MAGIC {
        return Err("not a cria rendezvous client (bad magic)".into());
    }
    let u = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    if u(8) != VERSION {
        return Err(format!(
            "protocol version {} (this build speaks {VERSION})",
            u(8)
        ));
    }
    Ok((u(12) as usize, u(16) as usize))
}

fn fetch(env: &DistEnv, t: Timeouts) -> Result<[u8; ID_BYTES]> {
    let addr = env.addr();
    let start = Instant::now();
    let mut s = loop {
        let remaining = t.timeout.saturating_sub(start.elapsed());
        if remaining.is_zero() {
            return Err(rdzv_err(
                &addr,
                format!(
                    "rank {} could not connect to rank 0 within {:.1} s; hint: is rank 0 running, and MASTER_ADDR/MASTER_PORT the same for every rank?",
                    env.rank,
                    t.timeout.as_secs_f64()
                ),
            ));
        }
        // Try every address MASTER_ADDR resolves to, in order: rank 0 listens on the first of
        // them that it could bind, which need not be the first (e.g. "localhost" resolving to
        // ::1 then 127.0.0.1 on a host without IPv6, where rank 0 ends up on 127.0.0.1).
        let per_try = remaining.min(Duration::from_secs(1));
        let connected = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.find_map(|sa| TcpStream::connect_timeout(&sa, per_try).ok()));
        if let Some(s) = connected {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    s.set_write_timeout(Some(t.io_timeout))
        .map_err(|e| rdzv_err(&addr, e.to_string()))?;
    let mut hello = Vec::with_capacity(20);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&VERSION.to_le_bytes());
    hello.extend_from_slice(&(env.rank as u32).to_le_bytes());
    hello.extend_from_slice(&(env.world_size as u32).to_le_bytes());
    s.write_all(&hello)
        .map_err(|e| rdzv_err(&addr, format!("rank {} sending hello: {e}", env.rank)))?;
    // Rank 0 answers only once every rank is in: wait up to the rest of the deadline.
    let remaining = t
        .timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(remaining))
        .map_err(|e| rdzv_err(&addr, e.to_string()))?;
    let mut head = [0u8; 16];
    s.read_exact(&mut head).map_err(|e| {
        rdzv_err(&addr, format!("rank {} waiting for the id from rank 0: {e} (rank 0 gives up and closes the connection when some rank never arrives; its error names them)", env.rank))
    })?;
    if &head[..8] != MAGIC {
        return Err(rdzv_err(&addr, "reply from rank 0 has a bad magic"));
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize;
    if version != VERSION || len != ID_BYTES {
        return Err(rdzv_err(
            &addr,
            format!(
                "reply version {version} length {len}; expected version {VERSION} length {ID_BYTES}"
            ),
        ));
    }
    let mut id = [0u8; ID_BYTES];
    s.read_exact(&mut id)
        .map_err(|e| rdzv_err(&addr, format!("reading the id: {e}")))?;
    Ok(id)
}

/// 128 bytes that differ between runs (time, pid), for `rendezvous-check` where no NCCL
/// library makes the id.
pub fn random_id() -> [u8; ID_BYTES] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut rng = Rng::new(nanos ^ ((std::process::id() as u64) << 32));
    let mut id = [0u8; ID_BYTES];
    for chunk in id.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    id
}

/// Start positions of one global batch: `count` = world_size * batch_size windows of T+1
/// tokens drawn in order from `rng` (exactly the draws the single-process sampler makes when
/// world_size = 1).
pub fn global_batch_starts(rng: &mut Rng, train_len: usize, t: usize, count: usize) -> Vec<usize> {
    let max_start = (train_len - t - 1) as u64 + 1;
    (0..count).map(|_| rng.below(max_start) as usize).collect()
}

/// Rank `rank`'s rows of a global batch: the contiguous `len / world` windows starting at
/// rank * len / world. Every rank draws the same global batch (same seed, same RNG), so the
/// shards are disjoint and together are the whole batch.
pub fn shard(starts: &[usize], rank: usize, world: usize) -> &[usize] {
    let b = starts.len() / world;
    &starts[rank * b..(rank + 1) * b]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn env_absent_is_single_process_and_complete_env_parses() {
        assert_eq!(DistEnv::from_vars(vars(&[])).unwrap(), None);
        let ok = [
            ("RANK", "2"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29500"),
        ];
        let e = DistEnv::from_vars(vars(&ok)).unwrap().unwrap();
        assert_eq!(
            (e.rank, e.world_size, e.local_rank, e.addr().as_str()),
            (2, 4, 2, "127.0.0.1:29500")
        );
    }

    #[test]
    fn env_errors_name_the_variable() {
        let base = [
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "29500"),
        ];
        let with = |k: &str, v: Option<&str>| {
            let mut p: Vec<(&str, &str)> =
                base.iter().copied().filter(|(kk, _)| *kk != k).collect();
            if let Some(v) = v {
                p.push((k, v));
            }
            DistEnv::from_vars(vars(&p)).unwrap_err()
        };
        for (k, v, want) in [
            ("RANK", Some("2"), "RANK"),
            ("RANK", Some("x"), "RANK"),
            ("WORLD_SIZE", Some("0"), "WORLD_SIZE"),
            ("LOCAL_RANK", None, "LOCAL_RANK"),
            ("MASTER_ADDR", None, "MASTER_ADDR"),
            ("MASTER_PORT", Some("70000"), "MASTER_PORT"),
            ("MASTER_PORT", Some("0"), "MASTER_PORT"),
        ] {
            match with(k, v) {
                TrainError::DistEnv { var, .. } => assert_eq!(var, want, "{k}={v:?}"),
                other => panic!("{k}={v:?}: unexpected {other}"),
            }
        }
    }

    #[test]
    fn shards_are_disjoint_and_cover_the_global_batch() {
        for world in [1usize, 2, 3, 8] {
            let b = 5;
            let mut rng = Rng::new(7 + world as u64);
            let starts = global_batch_starts(&mut rng, 10_000, 64, world * b);
            // Shard the batch's row indices: each row must be owned by exactly one rank.
            let rows: Vec<usize> = (0..starts.len()).collect();
            let mut seen = vec![0usize; starts.len()];
            for rank in 0..world {
                let mine = shard(&rows, rank, world);
                assert_eq!(mine.len(), b);
                assert_eq!(
                    shard(&starts, rank, world),
                    &mine.iter().map(|&r| starts[r]).collect::<Vec<_>>()[..]
                );
                for &r in mine {
                    seen[r] += 1;
                }
            }
            assert!(
                seen.iter().all(|&c| c == 1),
                "world {world}: every window owned exactly once: {seen:?}"
            );
            // Sharding does not change what is drawn: the same seed gives the same global batch
            // as a single process drawing world*b windows, and world = 1 is the plain sampler.
            let mut rng2 = Rng::new(7 + world as u64);
            assert_eq!(
                global_batch_starts(&mut rng2, 10_000, 64, world * b),
                starts
            );
            assert!(starts.iter().all(|&s| s + 64 < 10_000));
        }
    }

    #[test]
    fn consecutive_global_batches_cover_the_sampler_stream_in_order() {
        // Ranks take turns over the single-process stream: concatenating the shards of rank
        // 0..world for each step reproduces the stream a one-process run with batch world*b draws.
        let (world, b, steps) = (3usize, 4usize, 5usize);
        let mut single = Rng::new(99);
        let stream: Vec<usize> = (0..steps)
            .flat_map(|_| global_batch_starts(&mut single, 5000, 32, world * b))
            .collect();
        let mut per_rank: Vec<Rng> = (0..world).map(|_| Rng::new(99)).collect();
        let mut rebuilt = Vec::new();
        for _ in 0..steps {
            let batches: Vec<Vec<usize>> = per_rank
                .iter_mut()
                .map(|r| global_batch_starts(r, 5000, 32, world * b))
                .collect();
            for (rank, g) in batches.iter().enumerate() {
                rebuilt.extend_from_slice(shard(g, rank, world));
            }
        }
        assert_eq!(rebuilt, stream);
    }
}
