//! A small HTTP/1.1 file server on 127.0.0.1 for download tests: each path answers
//! as its `Reply` says (a file, a cut transfer, a stall, an error status), and every
//! request's path is kept. Stopped (and its threads joined) on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub enum Reply {
    /// 200 with this body.
    File(Vec<u8>),
    /// 200 announcing the whole body's length, then only the first `cut` bytes and
    /// the connection closed.
    Cut(Vec<u8>, usize),
    /// 200 and its headers, then nothing until the client gives up.
    Stall,
    /// This status, with a short HTML page.
    Status(u16),
}

type Routes = Arc<Mutex<HashMap<String, Reply>>>;

pub struct FileServer {
    pub port: u16,
    routes: Routes,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let routes: Routes = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, requests, stop) = (routes.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut handlers = Vec::new();
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (routes, requests, stop) = (routes.clone(), requests.clone(), stop.clone());
                    handlers.push(std::thread::spawn(move || {
                        serve(conn, &routes, &requests, &stop)
                    }));
                }
                for h in handlers {
                    let _ = h.join();
                }
            })
        };
        Self {
            port,
            routes,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Serves `reply` at `path` (replacing what was there); `None` removes it (404).
    pub fn set(&self, path: &str, reply: Option<Reply>) {
        let mut routes = self.routes.lock().unwrap();
        match reply {
            Some(r) => routes.insert(path.to_owned(), r),
            None => routes.remove(path),
        };
    }

    /// The paths requested so far, in order; cleared.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, routes: &Routes, requests: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // The headers, up to the empty line.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
    if path.is_empty() {
        return;
    }
    requests.lock().unwrap().push(path.clone());
    let reply = routes.lock().unwrap().get(&path).cloned();
    let head = |status: &str, len: usize| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        )
    };
    let _ = match reply {
        Some(Reply::File(body)) => conn
            .write_all(head("200 OK", body.len()).as_bytes())
            .and_then(|()| conn.write_all(&body)),
        Some(Reply::Cut(body, cut)) => conn
            .write_all(head("200 OK", body.len()).as_bytes())
            .and_then(|()| conn.write_all(&body[..cut])),
        Some(Reply::Stall) => {
            let _ = conn.write_all(head("200 OK", 1 << 20).as_bytes());
            let until = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
        Some(Reply::Status(code)) => {
            let page = format!("<html><body>{code}</body></html>");
            conn.write_all(head(&format!("{code} Error"), page.len()).as_bytes())
                .and_then(|()| conn.write_all(page.as_bytes()))
        }
        None => {
            let page = "<html><body>Not Found</body></html>";
            conn.write_all(head("404 Not Found", page.len()).as_bytes())
                .and_then(|()| conn.write_all(page.as_bytes()))
        }
    };
    let _ = conn.shutdown(std::net::Shutdown::Both);
}
