//! The parts of Go's `encoding/json` (Go 1.19, what etcd 3.4.23 is built with) whose behaviour shows
//! through etcd's JSON gateway: the scanner with its exact syntax-error messages, `Decoder.Decode`'s
//! "first value of the stream" semantics, string unquoting, `encoding/base64`'s decoder with its error
//! offsets, and the `%q` / `quoteChar` formatting used in messages.
//!
//! Everything works on bytes, as Go does: invalid UTF-8 inside strings is accepted and replaced by
//! U+FFFD when unquoted.

/// Go's maximum nesting depth (`maxNestingDepth` in `encoding/json/scanner.go`).
const MAX_DEPTH: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    BeginValue,
    BeginValueOrEmpty,
    BeginStringOrEmpty,
    BeginString,
    EndValue,
    EndTop,
    InString,
    InStringEsc,
    InStringEscU(u8),
    Neg,
    Zero,
    Digits,
    Dot,
    Dot0,
    E,
    ESign,
    E0,
    Literal(&'static [u8], usize, &'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Parse {
    ObjectKey,
    ObjectValue,
    ArrayValue,
}

#[derive(PartialEq, Eq, Debug)]
enum Step {
    Continue,
    /// A value just ended at top level (delivered one byte late, as Go does).
    End,
    Error,
}

/// Go's `scanner` state machine.
struct Scanner {
    state: State,
    parse: Vec<Parse>,
    end_top: bool,
    err: Option<String>,
}

/// `quoteChar` from `encoding/json/scanner.go`.
pub fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        _ => {
            let q = go_quote(char::from(c).to_string().as_bytes());
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

/// Go's `strconv.Quote` (what `%q` prints) for a byte string: printable runes as they are, the
/// usual short escapes, other runes as `\u`/`\U`, invalid UTF-8 bytes as `\x`.
pub fn go_quote(b: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut rest = b;
    while !rest.is_empty() {
        let (ch, len) = match std::str::from_utf8(rest) {
            Ok(s) => (s.chars().next(), s.chars().next().map_or(1, char::len_utf8)),
            Err(e) if e.valid_up_to() > 0 => {
                let s = std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default();
                let c = s.chars().next();
                (c, c.map_or(1, char::len_utf8))
            }
            Err(_) => (None, 1),
        };
        match ch {
            None => out.push_str(&format!("\\x{:02x}", rest[0])),
            Some(c) => match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if is_go_printable(c) => out.push(c),
                c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
                c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push_str(&format!("\\U{:08x}", c as u32)),
            },
        }
        rest = &rest[len..];
    }
    out.push('"');
    out
}

/// An approximation of Go's `strconv.IsPrint` (letters, marks, numbers, punctuation, symbols and
/// the ASCII space): control and format characters, separators other than U+0020, and
/// non-characters are not printable.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x20 || (0x7f..0xa0).contains(&u) {
        return false;
    }
    if u == 0xad || (0x2000..=0x200f).contains(&u) || (0x2028..=0x202f).contains(&u) {
        return false;
    }
    if (0x205f..=0x206f).contains(&u) || u == 0x3000 || u == 0xfeff || u == 0xa0 || u == 0x1680 {
        return false;
    }
    if (0xfff9..=0xfffb).contains(&u) || (0xe000..=0xf8ff).contains(&u) || u >= 0xf0000 {
        return false;
    }
    !c.is_control()
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl Scanner {
    fn new() -> Scanner {
        Scanner { state: State::BeginValue, parse: Vec::new(), end_top: false, err: None }
    }

    fn error(&mut self, c: u8, context: &str) -> Step {
        self.err = Some(format!("invalid character {} {}", quote_char(c), context));
        Step::Error
    }

    fn push(&mut self, c: u8, p: Parse, next: State) -> Step {
        self.parse.push(p);
        if self.parse.len() > MAX_DEPTH {
            return self.error(c, "exceeded max depth");
        }
        self.state = next;
        Step::Continue
    }

    fn begin_value(&mut self, c: u8) -> Step {
        if is_space(c) {
            return Step::Continue;
        }
        match c {
            b'{' => self.push(c, Parse::ObjectKey, State::BeginStringOrEmpty),
            b'[' => self.push(c, Parse::ArrayValue, State::BeginValueOrEmpty),
            b'"' => {
                self.state = State::InString;
                Step::Continue
            }
            b'-' => {
                self.state = State::Neg;
                Step::Continue
            }
            b'0' => {
                self.state = State::Zero;
                Step::Continue
            }
            b'1'..=b'9' => {
                self.state = State::Digits;
                Step::Continue
            }
            b't' => {
                self.state = State::Literal(b"true", 1, "true");
                Step::Continue
            }
            b'f' => {
                self.state = State::Literal(b"false", 1, "false");
                Step::Continue
            }
            b'n' => {
                self.state = State::Literal(b"null", 1, "null");
                Step::Continue
            }
            _ => self.error(c, "looking for beginning of value"),
        }
    }

    fn end_value(&mut self, c: u8) -> Step {
        let Some(&top) = self.parse.last() else {
            self.state = State::EndTop;
            self.end_top = true;
            return self.end_top_step(c);
        };
        if is_space(c) {
            self.state = State::EndValue;
            return Step::Continue;
        }
        match top {
            Parse::ObjectKey => {
                if c == b':' {
                    *self.parse.last_mut().unwrap() = Parse::ObjectValue;
                    self.state = State::BeginValue;
                    return Step::Continue;
                }
                self.error(c, "after object key")
            }
            Parse::ObjectValue => {
                if c == b',' {
                    *self.parse.last_mut().unwrap() = Parse::ObjectKey;
                    self.state = State::BeginString;
                    return Step::Continue;
                }
                if c == b'}' {
                    self.parse.pop();
                    return self.after_close();
                }
                self.error(c, "after object key:value pair")
            }
            Parse::ArrayValue => {
                if c == b',' {
                    self.state = State::BeginValue;
                    return Step::Continue;
                }
                if c == b']' {
                    self.parse.pop();
                    return self.after_close();
                }
                self.error(c, "after array element")
            }
        }
    }

    fn after_close(&mut self) -> Step {
        if self.parse.is_empty() {
            self.state = State::EndTop;
            self.end_top = true;
        } else {
            self.state = State::EndValue;
        }
        Step::Continue
    }

    fn end_top_step(&mut self, c: u8) -> Step {
        if !is_space(c) {
            self.error(c, "after top-level value");
        }
        Step::End
    }

    fn step(&mut self, c: u8) -> Step {
        match self.state {
            State::BeginValue => self.begin_value(c),
            State::BeginValueOrEmpty => {
                if is_space(c) {
                    return Step::Continue;
                }
                if c == b']' {
                    return self.end_value(c);
                }
                self.begin_value(c)
            }
            State::BeginStringOrEmpty => {
                if is_space(c) {
                    return Step::Continue;
                }
                if c == b'}' {
                    *self.parse.last_mut().unwrap() = Parse::ObjectValue;
                    return self.end_value(c);
                }
                self.begin_string(c)
            }
            State::BeginString => self.begin_string(c),
            State::EndValue => self.end_value(c),
            State::EndTop => self.end_top_step(c),
            State::InString => {
                if c == b'"' {
                    self.state = State::EndValue;
                    return Step::Continue;
                }
                if c == b'\\' {
                    self.state = State::InStringEsc;
                    return Step::Continue;
                }
                if c < 0x20 {
                    return self.error(c, "in string literal");
                }
                Step::Continue
            }
            State::InStringEsc => match c {
                b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => {
                    self.state = State::InString;
                    Step::Continue
                }
                b'u' => {
                    self.state = State::InStringEscU(0);
                    Step::Continue
                }
                _ => self.error(c, "in string escape code"),
            },
            State::InStringEscU(n) => {
                if c.is_ascii_hexdigit() {
                    self.state = if n == 3 { State::InString } else { State::InStringEscU(n + 1) };
                    return Step::Continue;
                }
                self.error(c, "in \\u hexadecimal character escape")
            }
            State::Neg => match c {
                b'0' => {
                    self.state = State::Zero;
                    Step::Continue
                }
                b'1'..=b'9' => {
                    self.state = State::Digits;
                    Step::Continue
                }
                _ => self.error(c, "in numeric literal"),
            },
            State::Digits if c.is_ascii_digit() => Step::Continue,
            State::Zero | State::Digits => match c {
                b'.' => {
                    self.state = State::Dot;
                    Step::Continue
                }
                b'e' | b'E' => {
                    self.state = State::E;
                    Step::Continue
                }
                _ => self.end_value(c),
            },
            State::Dot => {
                if c.is_ascii_digit() {
                    self.state = State::Dot0;
                    return Step::Continue;
                }
                self.error(c, "after decimal point in numeric literal")
            }
            State::Dot0 => match c {
                b'0'..=b'9' => Step::Continue,
                b'e' | b'E' => {
                    self.state = State::E;
                    Step::Continue
                }
                _ => self.end_value(c),
            },
            State::E => match c {
                b'+' | b'-' => {
                    self.state = State::ESign;
                    Step::Continue
                }
                _ => self.e_sign(c),
            },
            State::ESign => self.e_sign(c),
            State::E0 => {
                if c.is_ascii_digit() {
                    return Step::Continue;
                }
                self.end_value(c)
            }
            State::Literal(word, i, name) => {
                if c == word[i] {
                    self.state = if i + 1 == word.len() { State::EndValue } else { State::Literal(word, i + 1, name) };
                    return Step::Continue;
                }
                let ctx = format!("in literal {name} (expecting {})", quote_char(word[i]));
                self.error(c, &ctx)
            }
        }
    }

    fn begin_string(&mut self, c: u8) -> Step {
        if is_space(c) {
            return Step::Continue;
        }
        if c == b'"' {
            self.state = State::InString;
            return Step::Continue;
        }
        self.error(c, "looking for beginning of object key string")
    }

    fn e_sign(&mut self, c: u8) -> Step {
        if c.is_ascii_digit() {
            self.state = State::E0;
            return Step::Continue;
        }
        self.error(c, "in exponent of numeric literal")
    }

    /// Go's `scanner.eof`: feeds a space, then decides.
    fn eof(&mut self) -> Result<(), String> {
        if let Some(e) = &self.err {
            return Err(e.clone());
        }
        if self.end_top {
            return Ok(());
        }
        self.step(b' ');
        if self.end_top {
            return Ok(());
        }
        Err(self.err.clone().unwrap_or_else(|| "unexpected end of JSON input".to_string()))
    }
}

/// `checkValid` as `json.Unmarshal` runs it before decoding: the whole input must be one value.
pub fn check_valid(data: &[u8]) -> Result<(), String> {
    let mut s = Scanner::new();
    for &c in data {
        if s.step(c) == Step::Error {
            return Err(s.err.unwrap_or_default());
        }
    }
    s.eof()
}

/// `json.NewDecoder(body).Decode(&raw)`: the first JSON value of the stream, `None` at a clean end
/// of input (`io.EOF`, which the gateway treats as an empty request). Anything after the first
/// value is ignored, as Go does.
pub fn decode_first(body: &[u8]) -> Result<Option<&[u8]>, String> {
    let Some(start) = body.iter().position(|&c| !is_space(c)) else { return Ok(None) };
    let mut s = Scanner::new();
    for (i, &c) in body.iter().enumerate().skip(start) {
        match s.step(c) {
            Step::End => return Ok(Some(&body[start..i])),
            Step::Error => return Err(s.err.unwrap_or_default()),
            Step::Continue => {
                // Go delivers the end of an object or array without waiting for the next byte.
                if s.end_top && s.state == State::EndTop {
                    return Ok(Some(&body[start..=i]));
                }
            }
        }
    }
    // End of stream inside or right after a value (numbers and literals end only here).
    if s.step(b' ') == Step::End || s.end_top {
        return Ok(Some(&body[start..]));
    }
    Err("unexpected EOF".to_string())
}

/// Finds the JSON values of a stream that arrives piece by piece (a bidirectional call's body) where
/// `json.Decoder.Decode` called in a loop would, scanning each byte once however the pieces fall.
pub struct Splitter {
    scanner: Scanner,
    /// Where the value being scanned starts (after white space).
    start: Option<usize>,
    /// How much of the buffer has been scanned.
    scanned: usize,
}

impl Default for Splitter {
    fn default() -> Splitter {
        Splitter { scanner: Scanner::new(), start: None, scanned: 0 }
    }
}

impl Splitter {
    /// Scans what `buf` gained since the last call: `Some((start, end))` once `buf[start..end]` is a whole
    /// value (then the caller drops `buf[..end]` and calls [`Splitter::reset`]), `None` while it needs
    /// more, or Go's syntax error.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Option<(usize, usize)>, String> {
        for (i, &c) in buf.iter().enumerate().skip(self.scanned) {
            let start = match self.start {
                Some(s) => s,
                None if is_space(c) => continue,
                None => *self.start.insert(i),
            };
            match self.scanner.step(c) {
                Step::End => return Ok(Some((start, i))),
                Step::Error => return Err(self.scanner.err.clone().unwrap_or_default()),
                Step::Continue if self.scanner.end_top && self.scanner.state == State::EndTop => {
                    return Ok(Some((start, i + 1)));
                }
                Step::Continue => {}
            }
        }
        self.scanned = buf.len();
        Ok(None)
    }

    /// The input ended after `buf`: the value in progress if it is whole (numbers and literals end only
    /// here), `None` after white space alone, else Go's `unexpected EOF`.
    pub fn finish(&mut self, buf: &[u8]) -> Result<Option<(usize, usize)>, String> {
        let Some(start) = self.start else { return Ok(None) };
        if self.scanner.step(b' ') == Step::End || self.scanner.end_top {
            return Ok(Some((start, buf.len())));
        }
        Err("unexpected EOF".to_string())
    }

    pub fn reset(&mut self) {
        *self = Splitter::default();
    }
}

/// The kind of a (valid) JSON value, named as Go's `UnmarshalTypeError` names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    pub fn go_name(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Array => "array",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Null => "null",
        }
    }
}

/// The kind of a valid, trimmed JSON value.
pub fn kind(v: &[u8]) -> Kind {
    match v.first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'n') => Kind::Null,
        _ => Kind::Number,
    }
}

fn skip_ws(v: &[u8], mut i: usize) -> usize {
    while i < v.len() && is_space(v[i]) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the valid value starting at `i`.
fn value_end(v: &[u8], i: usize) -> usize {
    match v[i] {
        b'"' => {
            let mut j = i + 1;
            while j < v.len() {
                match v[j] {
                    b'\\' => j += 2,
                    b'"' => return j + 1,
                    _ => j += 1,
                }
            }
            v.len()
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < v.len() {
                match v[j] {
                    b'"' => {
                        j = value_end(v, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            v.len()
        }
        _ => {
            let mut j = i;
            while j < v.len() && !matches!(v[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                j += 1;
            }
            j
        }
    }
}

/// The members of a valid JSON object, in order (duplicates kept; callers let the last win).
pub fn object_members(v: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    let mut i = skip_ws(v, 1);
    while i < v.len() && v[i] != b'}' {
        let kend = value_end(v, i);
        let key = unquote(&v[i..kend]);
        i = skip_ws(v, kend) + 1; // ':'
        i = skip_ws(v, i);
        let vend = value_end(v, i);
        out.push((String::from_utf8_lossy(&key).into_owned(), &v[i..vend]));
        i = skip_ws(v, vend);
        if i < v.len() && v[i] == b',' {
            i = skip_ws(v, i + 1);
        }
    }
    out
}

/// The elements of a valid JSON array.
pub fn array_elements(v: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = skip_ws(v, 1);
    while i < v.len() && v[i] != b']' {
        let end = value_end(v, i);
        out.push(&v[i..end]);
        i = skip_ws(v, end);
        if i < v.len() && v[i] == b',' {
            i = skip_ws(v, i + 1);
        }
    }
    out
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// Go's `unquote` of a valid JSON string literal (with its quotes) into UTF-8 bytes; invalid UTF-8
/// and unpaired surrogates become U+FFFD.
pub fn unquote(v: &[u8]) -> Vec<u8> {
    let inner = &v[1..v.len().saturating_sub(1).max(1)];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    let push = |out: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    while i < inner.len() {
        let c = inner[i];
        if c == b'\\' && i + 1 < inner.len() {
            let e = inner[i + 1];
            i += 2;
            let simple = match e {
                b'b' => Some('\u{8}'),
                b'f' => Some('\u{c}'),
                b'n' => Some('\n'),
                b'r' => Some('\r'),
                b't' => Some('\t'),
                b'"' => Some('"'),
                b'\\' => Some('\\'),
                b'/' => Some('/'),
                _ => None,
            };
            if let Some(ch) = simple {
                push(&mut out, ch);
                continue;
            }
            // \uXXXX, possibly a surrogate pair.
            let u = hex4(&inner[i..]).unwrap_or(0xfffd);
            i += 4;
            if (0xd800..0xdc00).contains(&u) && inner.get(i) == Some(&b'\\') && inner.get(i + 1) == Some(&b'u') {
                if let Some(lo) = hex4(&inner[i + 2..]) {
                    if (0xdc00..0xe000).contains(&lo) {
                        let cp = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                        push(&mut out, char::from_u32(cp).unwrap_or('\u{fffd}'));
                        i += 6;
                        continue;
                    }
                }
            }
            push(&mut out, char::from_u32(u).unwrap_or('\u{fffd}'));
            continue;
        }
        if c < 0x80 {
            out.push(c);
            i += 1;
            continue;
        }
        // A UTF-8 sequence: copy when valid, else one U+FFFD per bad byte.
        let len = match c {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        if len > 0 && i + len <= inner.len() && std::str::from_utf8(&inner[i..i + len]).is_ok() {
            out.extend_from_slice(&inner[i..i + len]);
            i += len;
        } else {
            push(&mut out, '\u{fffd}');
            i += 1;
        }
    }
    out
}

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// `base64.StdEncoding.Decode` (Go 1.19): padding required, `\r` and `\n` skipped anywhere, errors
/// as `illegal base64 data at input byte N`.
pub fn base64_decode(src: &[u8]) -> Result<Vec<u8>, String> {
    let corrupt = |n: usize| format!("illegal base64 data at input byte {n}");
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    while si < src.len() {
        let mut dbuf = [0u8; 4];
        let mut dlen = 4;
        let mut j = 0;
        let mut trailing = None;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                // StdEncoding pads, so an unfinished quantum is always an error.
                return Err(corrupt(si - j));
            }
            let c = src[si];
            si += 1;
            if let Some(v) = b64_value(c) {
                dbuf[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(corrupt(si - 1));
            }
            match j {
                0 | 1 => return Err(corrupt(si - 1)),
                2 => {
                    while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                        si += 1;
                    }
                    if si == src.len() {
                        return Err(corrupt(src.len()));
                    }
                    if src[si] != b'=' {
                        return Err(corrupt(si - 1));
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                si += 1;
            }
            if si < src.len() {
                trailing = Some(corrupt(si));
            }
            dlen = j;
            break;
        }
        let val =
            (u32::from(dbuf[0]) << 18) | (u32::from(dbuf[1]) << 12) | (u32::from(dbuf[2]) << 6) | u32::from(dbuf[3]);
        let bytes = [(val >> 16) as u8, (val >> 8) as u8, val as u8];
        out.extend_from_slice(&bytes[..dlen - 1]);
        if let Some(e) = trailing {
            return Err(e);
        }
        if dlen < 4 {
            // Padding ends the input (anything after it was an error above).
            return Ok(out);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_read_as_go_writes_them() {
        assert_eq!(decode_first(b"{\"key\":\"YQ==\"").unwrap_err(), "unexpected EOF");
        assert_eq!(decode_first(b"  ").unwrap(), None);
        assert_eq!(decode_first(b"{\"a\":1} xx").unwrap(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(decode_first(b"123abc").unwrap(), Some(&b"123"[..]));
        assert_eq!(decode_first(b"12").unwrap(), Some(&b"12"[..]));
        assert_eq!(decode_first(b"-").unwrap_err(), "unexpected EOF");
        assert_eq!(decode_first(b"x").unwrap_err(), "invalid character 'x' looking for beginning of value");
        assert_eq!(
            decode_first(b"{1}").unwrap_err(),
            "invalid character '1' looking for beginning of object key string"
        );
        assert_eq!(decode_first(b"{\"a\" 1}").unwrap_err(), "invalid character '1' after object key");
        assert_eq!(decode_first(b"{\"a\":1 2}").unwrap_err(), "invalid character '2' after object key:value pair");
        assert_eq!(decode_first(b"[1 2]").unwrap_err(), "invalid character '2' after array element");
        assert_eq!(decode_first(b"[tx]").unwrap_err(), "invalid character 'x' in literal true (expecting 'r')");
        assert_eq!(decode_first(b"\"\\x\"").unwrap_err(), "invalid character 'x' in string escape code");
        assert_eq!(check_valid(b"abc").unwrap_err(), "invalid character 'a' looking for beginning of value");
        assert_eq!(check_valid(b"1x").unwrap_err(), "invalid character 'x' after top-level value");
        assert_eq!(check_valid(b"").unwrap_err(), "unexpected end of JSON input");
        assert_eq!(check_valid(b"-").unwrap_err(), "invalid character ' ' in numeric literal");
        assert_eq!(check_valid(b"tru").unwrap_err(), "invalid character ' ' in literal true (expecting 'e')");
        assert_eq!(check_valid(b"[1").unwrap_err(), "unexpected end of JSON input");
        assert_eq!(check_valid(b"\\u0031").unwrap_err(), "invalid character '\\\\' looking for beginning of value");
        assert!(check_valid(b" 1 ").is_ok());
    }

    #[test]
    fn base64_errors_match_go() {
        assert_eq!(base64_decode(b"YQ==").unwrap(), b"a");
        assert_eq!(base64_decode(b"aG\nk=").unwrap(), b"hi");
        assert_eq!(base64_decode(b"aGk=\r\n").unwrap(), b"hi");
        assert_eq!(base64_decode(b"").unwrap(), b"");
        for (input, at) in
            [("YQ=", 3), ("YQ", 0), ("aGk", 0), ("aGk==", 4), ("aGk=a", 4), ("a", 0), ("aG=x", 2), ("!!!", 0)]
        {
            assert_eq!(base64_decode(input.as_bytes()).unwrap_err(), format!("illegal base64 data at input byte {at}"));
        }
    }

    #[test]
    fn the_splitter_finds_what_decode_first_finds_in_any_pieces() {
        let body = br#" {"a":[1,{"b":"}"}]} [2] "s" 12 {"c":1}"#;
        let mut whole = Vec::new();
        let mut rest: &[u8] = body;
        while let Some(v) = decode_first(rest).unwrap() {
            whole.push(v.to_vec());
            let end = v.as_ptr() as usize - rest.as_ptr() as usize + v.len();
            rest = &rest[end..];
        }
        for piece in [1, 2, 3, 7, body.len()] {
            let (mut buf, mut split, mut found) = (Vec::new(), Splitter::default(), Vec::new());
            for chunk in body.chunks(piece) {
                buf.extend_from_slice(chunk);
                while let Some((s, e)) = split.feed(&buf).unwrap() {
                    found.push(buf[s..e].to_vec());
                    buf.drain(..e);
                    split.reset();
                }
            }
            if let Some((s, e)) = split.finish(&buf).unwrap() {
                found.push(buf[s..e].to_vec());
            }
            assert_eq!(found, whole, "pieces of {piece}");
        }
        let mut split = Splitter::default();
        assert_eq!(split.feed(b"{\"a\":"), Ok(None));
        assert_eq!(split.finish(b"{\"a\":"), Err("unexpected EOF".to_string()));
        assert_eq!(
            Splitter::default().feed(b"{]"),
            Err("invalid character ']' looking for beginning of object key string".to_string())
        );
    }

    #[test]
    fn objects_and_strings() {
        let o = object_members(b"{ \"a\" : [1, {\"b\":\"}\"}] , \"k\\u0065y\":\"x\" }");
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].1, b"[1, {\"b\":\"}\"}]");
        assert_eq!(o[1].0, "key");
        assert_eq!(array_elements(b"[1, {\"b\":\"]\"}, null ]").len(), 3);
        assert_eq!(unquote(b"\"\\ud83d\\ude00\\n\""), "😀\n".as_bytes());
        assert_eq!(go_quote(b"a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(quote_char(b'\\'), "'\\\\'");
    }
}
