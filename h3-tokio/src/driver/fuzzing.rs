//! A server-side HTTP/3 connection without QUIC, for fuzzing (cargo feature `fuzzing`).
//!
//! The peer's stream bytes go through nghttp3 and the driver's own callbacks (its
//! `Events` and `Action`s) as on a real connection. Around them this plays the
//! other parts: QUIC delivers bytes as told and takes every byte written at once, and
//! the application answers each request with a small 200.

use std::collections::HashSet;

use super::*;

/// One server-side HTTP/3 connection fed by hand. After an error the connection is over
/// (a real one would be closed with that code): drop it.
pub struct Server {
    h3: ffi::Conn,
    st: State,
    /// Client streams whose receiving side ended (fin, reset, or we stopped reading):
    /// QUIC delivers nothing more on them.
    ended: HashSet<i64>,
    /// Client bidirectional streams opened so far (QUIC opens lower ids implicitly).
    opened_bidi: u64,
    /// The clock nghttp3's glitch rate limiter sees: 1 ms per delivery.
    now: u64,
    out: Vec<Bytes>,
}

impl Server {
    /// A server connection with `config`, its control and QPACK streams bound (3, 7, 11).
    pub fn new(config: Config) -> Server {
        let mut h3 = ffi::Conn::new(true, &config).expect("nghttp3 fails only out of memory");
        h3.bind_streams(3, 7, 11).expect("fresh stream ids");
        let conn = ConnShared::new(config);
        Server {
            h3,
            st: State {
                server: true,
                conn,
                streams: Default::default(),
                accepted: None,
                on_request: None,
                actions: Vec::new(),
                maybe_closed: Vec::new(),
                closed_bidi: 0,
            },
            ended: HashSet::new(),
            opened_bidi: 0,
            now: 0,
            out: Vec::new(),
        }
    }

    /// Delivers bytes the peer sent on its stream `sid` (client-initiated: bit 0 clear),
    /// `fin` if they are the last; ignored once that stream ended. `Err` is the
    /// connection error nghttp3 closes with.
    pub fn read(&mut self, sid: u64, data: &[u8], fin: bool) -> Result<(), Code> {
        let Some(sid) = self.open(sid).map_err(LibError::code)? else {
            return Ok(());
        };
        self.now += 1_000_000;
        let data = Bytes::copy_from_slice(data);
        let read = self.h3.read(&mut self.st, sid, data, fin, self.now);
        read.map_err(LibError::code)?;
        if fin {
            self.ended.insert(sid);
            self.st.recv_ended(sid);
        }
        self.settle().map_err(LibError::code)
    }

    /// The peer reset its stream `sid` with `code`; ignored once that stream ended.
    pub fn reset(&mut self, sid: u64, code: u64) -> Result<(), Code> {
        let Some(sid) = self.open(sid).map_err(LibError::code)? else {
            return Ok(());
        };
        self.ended.insert(sid);
        let reset = self.st.peer_reset(&mut self.h3, sid, code);
        reset.map_err(LibError::code)?;
        self.settle().map_err(LibError::code)
    }

    /// Accepts `sid` as the driver does the first time QUIC reports it; `None` if its
    /// receiving side already ended.
    fn open(&mut self, sid: u64) -> Result<Option<i64>, LibError> {
        assert_eq!(
            sid & 1,
            0,
            "stream {sid} is server-initiated: the peer cannot send on it"
        );
        let sid = sid as i64;
        if self.ended.contains(&sid) {
            return Ok(None);
        }
        if !self.st.streams.contains_key(&sid) {
            let bidi = sid & 2 == 0;
            if bidi {
                self.opened_bidi = self.opened_bidi.max(sid as u64 / 4 + 1);
                self.h3.set_max_client_streams_bidi(
                    self.opened_bidi + self.st.conn.config.max_concurrent_streams,
                );
            }
            let mut stream = Stream::new(&self.st.conn.ready, sid, None, None, None);
            stream.recv_done = false;
            stream.send_done = !bidi;
            self.st.streams.insert(sid, stream);
        }
        Ok(Some(sid))
    }

    /// Runs what the callbacks asked for, writes everything, frees finished streams.
    fn settle(&mut self) -> Result<(), LibError> {
        for action in std::mem::take(&mut self.st.actions) {
            match action {
                Action::Deliver(sid, _, _) => {
                    self.h3.priority(sid);
                    self.h3
                        .submit_response(sid, &Section::status(http::StatusCode::OK))?;
                    self.h3.queue_data(sid, Bytes::from_static(b"ok\n"))?;
                    self.h3.queue_eof(sid, None)?;
                }
                Action::Refuse(sid, status, _) => {
                    self.h3
                        .respond(sid, &Section::status(status), Bytes::new())?;
                    if self.ended.insert(sid) {
                        self.h3.shutdown_read(&mut self.st, sid)?;
                        self.st.recv_ended(sid);
                    }
                }
                Action::PeerGoaway => self.h3.shutdown_notice()?,
            }
        }
        while let Some(w) = self.h3.writev(&mut self.st, &mut self.out)? {
            let total = self.out.iter().map(Bytes::len).sum();
            self.h3.wrote(&mut self.st, w.sid, total)?;
            if let Some(stream) = self.st.streams.get_mut(&w.sid).filter(|_| w.fin) {
                stream.send_done = true;
                self.st.maybe_closed.push(w.sid);
            }
        }
        self.st.close_finished(&mut self.h3)
    }
}
