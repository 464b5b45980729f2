//! Per-segment Merkle tree over the hashes of all n chunks: the manifest keeps one root per
//! segment, each chunk carries its path to that root, so any single chunk is verified before
//! decoding without the manifest listing n hashes per segment.
//!
//! Leaves and inner nodes are domain-separated (prefix 0 and 1) and a leaf binds its chunk
//! index, so a chunk cannot pass for another index or for an inner node.

use super::Digest;

/// Hash of chunk `index` with bytes `payload`.
pub fn leaf_hash(index: u16, payload: &[u8]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&[0]);
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&[1]);
    h.update(&left.0);
    h.update(&right.0);
    h.finalize().into()
}

/// Number of sibling hashes in a proof for a tree of `n` leaves (padded to a power of two).
pub fn proof_len(n: usize) -> usize {
    n.max(1).next_power_of_two().trailing_zeros() as usize
}

/// All levels of the tree, leaves first; absent leaves (n not a power of two) are zero.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    levels: Vec<Vec<Digest>>,
}

impl MerkleTree {
    pub fn new(leaves: &[Digest]) -> MerkleTree {
        let width = leaves.len().max(1).next_power_of_two();
        let mut level = leaves.to_vec();
        level.resize(width, Digest::default());
        let mut levels = vec![level];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let prev = levels.last().map(Vec::as_slice).unwrap_or_default();
            let next = prev.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
            levels.push(next);
        }
        MerkleTree { levels }
    }

    pub fn root(&self) -> Digest {
        self.levels.last().map(|l| l[0]).unwrap_or_default()
    }

    /// The sibling hashes from leaf `index` up to the root.
    ///
    /// # Panics
    /// If `index` is not a leaf of this tree.
    pub fn proof(&self, index: usize) -> Vec<Digest> {
        assert!(index < self.levels[0].len(), "leaf {index} out of range");
        let mut at = index;
        let mut proof = Vec::with_capacity(self.levels.len() - 1);
        for level in &self.levels[..self.levels.len() - 1] {
            proof.push(level[at ^ 1]);
            at /= 2;
        }
        proof
    }
}

/// The root that `leaf` at `index` reaches through `proof`.
pub fn root_from_proof(index: usize, leaf: Digest, proof: &[Digest]) -> Digest {
    let mut at = index;
    let mut hash = leaf;
    for sibling in proof {
        hash = if at.is_multiple_of(2) {
            node_hash(&hash, sibling)
        } else {
            node_hash(sibling, &hash)
        };
        at /= 2;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_proves_to_the_root_and_no_other_position() {
        for n in [1usize, 2, 3, 7, 64, 100] {
            let leaves: Vec<Digest> = (0..n).map(|i| leaf_hash(i as u16, &[i as u8; 9])).collect();
            let tree = MerkleTree::new(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let proof = tree.proof(i);
                assert_eq!(proof.len(), proof_len(n));
                assert_eq!(root_from_proof(i, *leaf, &proof), tree.root());
                if n > 1 {
                    let other = (i + 1) % n;
                    assert_ne!(root_from_proof(other, *leaf, &proof), tree.root());
                }
            }
        }
    }
}
