//! Splitting output into payloads that never end inside a UTF-8 sequence, as the agent does:
//! an incomplete sequence at the end of a read waits for the next read; bytes that can never
//! become valid UTF-8 pass through unchanged.

/// Carries an incomplete trailing UTF-8 sequence from one read to the next.
#[derive(Debug, Default, Clone)]
pub struct Utf8Chunker {
    carry: Vec<u8>,
}

/// How many bytes at the end of `buf` are the start of a UTF-8 sequence that is not complete
/// yet (0 to 3).
pub fn incomplete_tail(buf: &[u8]) -> usize {
    // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
    for back in 1..=buf.len().min(3) {
        let b = buf[buf.len() - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte: keep looking for the lead
        }
        let need = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0, // ASCII or a byte that never leads: nothing to wait for
        };
        return if need > back { back } else { 0 };
    }
    0
}

impl Utf8Chunker {
    /// Appends `input` and splits everything that is complete into chunks of at most `max`
    /// bytes (`max` ≥ 4), none ending inside a sequence. An incomplete tail is kept.
    pub fn push(&mut self, input: &[u8], max: usize, mut emit: impl FnMut(&[u8])) {
        let max = max.max(4);
        self.carry.extend_from_slice(input);
        let keep = incomplete_tail(&self.carry);
        let ready = self.carry.len() - keep;
        let mut start = 0;
        while start < ready {
            let mut end = (start + max).min(ready);
            if end < ready {
                end -= incomplete_tail(&self.carry[start..end]);
            }
            emit(&self.carry[start..end]);
            start = end;
        }
        self.carry.drain(..ready);
    }

    /// Emits whatever is carried, complete or not (at the end of the stream).
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.carry.is_empty() {
            emit(&self.carry);
            self.carry.clear();
        }
    }

    /// A chunker carrying `carry` (the [`Utf8Chunker::carried_bytes`] of another one).
    pub fn with_carry(carry: Vec<u8>) -> Self {
        Self { carry }
    }

    /// The bytes waiting for the rest of their sequence.
    pub fn carried_bytes(&self) -> &[u8] {
        &self.carry
    }

    /// Bytes waiting for the rest of their sequence.
    pub fn carried(&self) -> usize {
        self.carry.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(input: &[&[u8]], max: usize) -> Vec<Vec<u8>> {
        let mut c = Utf8Chunker::default();
        let mut out = Vec::new();
        for part in input {
            c.push(part, max, |b| out.push(b.to_vec()));
        }
        out
    }

    #[test]
    fn a_sequence_split_across_reads_waits_for_its_end() {
        let euro = "€".as_bytes(); // e2 82 ac
        let out = chunks(&[&[b'a', euro[0]], &euro[1..]], 1024);
        assert_eq!(out, vec![b"a".to_vec(), euro.to_vec()]);
    }

    #[test]
    fn chunks_never_end_inside_a_sequence() {
        let text = "aé€😀".repeat(300);
        let out = chunks(&[text.as_bytes()], 1024);
        assert!(
            out.iter()
                .all(|c| c.len() <= 1024 && std::str::from_utf8(c).is_ok())
        );
        assert_eq!(out.concat(), text.as_bytes());
    }

    #[test]
    fn invalid_bytes_pass_through() {
        let out = chunks(&[&[0xff, b'x', 0x80]], 1024);
        assert_eq!(out.concat(), vec![0xff, b'x', 0x80]);
    }

    #[test]
    fn tail_detection() {
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail(&[b'a', 0xF0, 0x9F]), 2);
        assert_eq!(incomplete_tail(&[0xF0, 0x9F, 0x98, 0x80]), 0);
        assert_eq!(incomplete_tail(&[0xE2]), 1);
    }
}
