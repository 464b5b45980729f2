use rivulet_node_core::codec::Codec;
use sha2::Digest as _;
fn main() {
    let p = std::env::args().nth(1).unwrap();
    let data = std::fs::read(&p).unwrap();
    let t = std::time::Instant::now();
    let _ = sha2::Sha256::digest(&data);
    println!("sha256 {:?}", t.elapsed());
    let t = std::time::Instant::now();
    for c in data.chunks(65536) {
        let _ = blake3::hash(c);
    }
    println!("blake3 64k chunks x1 {:?}", t.elapsed());
    let codec = Codec::new(16, 64).unwrap();
    let t = std::time::Instant::now();
    let mut out = vec![0u8; 65536];
    for seg in data.chunks_exact(1 << 20) {
        let shards: Vec<&[u8]> = seg.chunks(65536).collect();
        for i in 16..64 {
            codec.encode_chunk(&shards, i, &mut out).unwrap();
        }
    }
    println!(
        "encode 48 parity {:?} kernel {:?}",
        t.elapsed(),
        rivulet_node_core::codec::Kernel::detect()
    );
    let t = std::time::Instant::now();
    let mut par = vec![0u8; 48 * 65536];
    for seg in data.chunks_exact(1 << 20) {
        let shards: Vec<&[u8]> = seg.chunks(65536).collect();
        let mut outs: Vec<&mut [u8]> = par.chunks_mut(65536).collect();
        codec.encode_parity(&shards, &mut outs).unwrap();
    }
    println!("encode_parity (dot_many) {:?}", t.elapsed());
    let t = std::time::Instant::now();
    for c in par.chunks(65536) {
        let _ = blake3::hash(c);
    }
    println!("blake3 of 48 parity x1 segment {:?}", t.elapsed());
    for block in [1024usize, 2048, 4096, 8192, 16384] {
        let t = std::time::Instant::now();
        let mut outs = vec![vec![0u8; 65536]; 48];
        for seg in data.chunks_exact(1 << 20) {
            let shards: Vec<&[u8]> = seg.chunks(65536).collect();
            for at in (0..65536).step_by(block) {
                let sub: Vec<&[u8]> = shards.iter().map(|s| &s[at..at + block]).collect();
                for (i, o) in outs.iter_mut().enumerate() {
                    codec
                        .encode_chunk(&sub, 16 + i, &mut o[at..at + block])
                        .unwrap();
                }
            }
        }
        println!("blocked {block}: {:?}", t.elapsed());
    }
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (m, _) =
            rivulet_node_core::format::build_manifest(p.as_ref(), 1 << 20, 16, 64).unwrap();
        println!("{} segments in {:?}", m.segment_count(), t.elapsed());
    }
}
