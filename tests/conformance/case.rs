//! A conformance case: the script of raw bytes each side sends and must receive, and the builders
//! the corpus's cases are written with.

/// One case: a script played in order, and what each side must receive.
pub struct Case {
    pub name: &'static str,
    pub steps: Vec<Step>,
}

/// One step of a case.
#[derive(Debug)]
pub enum Step {
    /// The client writes these bytes.
    Send(Vec<u8>),
    /// The app must receive exactly these bytes next, on whichever upstream connection.
    AppGets(Vec<u8>),
    /// The app writes these bytes on the connection the last request came on.
    AppSends(Vec<u8>),
    /// The app closes that connection (FIN).
    AppCloses,
    /// The app resets that connection (RST).
    AppResets,
    /// The client must receive exactly these bytes next.
    ClientGets(Vec<u8>),
    /// The client must receive one of understudy's own answers: this status, `connection: close`
    /// exactly when `close`, and no text when `head`. Its wording is not checked.
    Refused {
        status: u16,
        close: bool,
        head: bool,
    },
    /// understudy must close the client's connection now, with nothing more on it. A case that
    /// does not end with this ends by checking that the connection stays open.
    Closed,
    /// A request that must reach the app once (and the client get the app's answer), or not at
    /// all (and the client get a 502): never twice.
    Once(Box<Once>),
}

/// See [`Step::Once`].
#[derive(Debug)]
pub struct Once {
    pub request: Vec<u8>,
    pub forwarded: Vec<u8>,
    pub answer: Vec<u8>,
    pub relayed: Vec<u8>,
}

impl Step {
    /// What the step does, for failure reports.
    pub fn what(&self) -> &'static str {
        match self {
            Step::Send(_) => "the client sends",
            Step::AppGets(_) => "the app receives",
            Step::AppSends(_) => "the app sends",
            Step::AppCloses => "the app closes",
            Step::AppResets => "the app resets",
            Step::ClientGets(_) => "the client receives",
            Step::Refused { .. } => "understudy refuses",
            Step::Closed => "the client's connection closes",
            Step::Once(_) => "a request reaches the app once or gets a 502",
        }
    }
}

impl Case {
    /// A case with no steps yet, named as its failure report names it.
    pub fn new(name: &'static str) -> Case {
        Case {
            name,
            steps: Vec::new(),
        }
    }

    /// The case with `steps` played after its own, so cases read as scripts.
    pub fn with(mut self, steps: impl IntoIterator<Item = Step>) -> Case {
        self.steps.extend(steps);
        self
    }

    /// The same case, its last step understudy's own answer with `status` instead.
    pub fn with_status(mut self, status: u16) -> Case {
        if let Some(Step::Refused { status: s, .. }) = self.steps.last_mut() {
            *s = status;
        }
        self
    }
}

/// Owned bytes from a string or a byte string, so scripts can be written either way.
pub fn bytes(b: impl AsRef<[u8]>) -> Vec<u8> {
    b.as_ref().to_vec()
}

/// [`Step::Send`], from text.
pub fn send(b: impl AsRef<[u8]>) -> Step {
    Step::Send(bytes(b))
}

/// [`Step::AppGets`], from text.
pub fn app_gets(b: impl AsRef<[u8]>) -> Step {
    Step::AppGets(bytes(b))
}

/// [`Step::AppSends`], from text.
pub fn app_sends(b: impl AsRef<[u8]>) -> Step {
    Step::AppSends(bytes(b))
}

/// [`Step::ClientGets`], from text.
pub fn client_gets(b: impl AsRef<[u8]>) -> Step {
    Step::ClientGets(bytes(b))
}

/// understudy's own answer with `status`, keeping the connection.
pub fn refused_open(status: u16) -> Step {
    Step::Refused {
        status,
        close: false,
        head: false,
    }
}

/// The line understudy writes last in every forwarded request head (the client is 127.0.0.1).
pub const XFF: &str = "x-forwarded-for: 127.0.0.1\r\n";

/// A request head as the app receives it: `lines` (request line and headers), then
/// `x-forwarded-for` and the blank line.
pub fn fwd(lines: &str) -> String {
    format!("{lines}{XFF}\r\n")
}

/// The request most cases send.
pub const GET: &str = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// [`GET`] as the app receives it.
pub fn get_fwd() -> String {
    fwd("GET / HTTP/1.1\r\nHost: x\r\n")
}

/// The answer most cases give.
pub const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A 200 whose body is `body`, framed by Content-Length.
pub fn ok_with(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One request relayed and answered.
pub fn exchange(request: &str, forwarded: &str, answer: &str, relayed: &str) -> Vec<Step> {
    vec![
        send(request),
        app_gets(forwarded),
        app_sends(answer),
        client_gets(relayed),
    ]
}

/// A second request on the same client connection, answered: the first left it sound.
pub fn follow_up() -> Vec<Step> {
    let next = ok_with("next");
    exchange(
        "GET /next HTTP/1.1\r\nHost: x\r\n\r\n",
        &fwd("GET /next HTTP/1.1\r\nHost: x\r\n"),
        &next,
        &next,
    )
}

/// A case of one exchange, the client's connection kept.
pub fn relayed(
    name: &'static str,
    request: &str,
    forwarded: &str,
    answer: &str,
    relayed: &str,
) -> Case {
    Case::new(name).with(exchange(request, forwarded, answer, relayed))
}

/// A case of one exchange whose answer reaches the client unchanged, the connection kept.
pub fn same(name: &'static str, request: &str, forwarded: &str, answer: &str) -> Case {
    relayed(name, request, forwarded, answer, answer)
}

/// A request understudy refuses itself with `status` and then closes; nothing reaches the app.
pub fn refusal(name: &'static str, request: &str, status: u16) -> Case {
    Case::new(name).with([
        send(request),
        Step::Refused {
            status,
            close: true,
            head: request.starts_with("HEAD "),
        },
        Step::Closed,
    ])
}

/// A GET whose answer from the app understudy will not relay: a 502, the client's connection
/// kept (its request was read whole).
pub fn bad_answer(name: &'static str, answer: &str) -> Case {
    Case::new(name).with([
        send(GET),
        app_gets(get_fwd()),
        app_sends(answer),
        refused_open(502),
    ])
}

/// `n` bytes of a repeating alphabet.
pub fn filler(n: usize) -> String {
    (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}
