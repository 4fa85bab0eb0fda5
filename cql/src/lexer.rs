//! The lexer: CQL text into tokens, each with the line and column it
//! starts at.
//!
//! Keywords are not tokens of their own: CQL lets most keywords be column
//! names, so the lexer hands out identifiers and the parser decides, by
//! context, case-insensitively. A quoted identifier (`"Name"`) keeps its
//! case and is never a keyword.

use std::fmt;

use uuid::Uuid;

use crate::ParseError;

/// Where a token starts: line and column, both from 1 (columns count
/// characters, not bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    /// An unquoted identifier or keyword, as written.
    Identifier(String),
    /// A double-quoted identifier, unescaped.
    QuotedIdentifier(String),
    /// A string constant (`'…'` or `$$…$$`), unescaped.
    String(String),
    /// An integer constant (its digits; a sign is a token of its own).
    Integer(String),
    /// A float constant, as written.
    Float(String),
    /// A UUID constant.
    Uuid(Uuid),
    /// A blob constant (`0x…`).
    Blob(Vec<u8>),
    /// Punctuation or an operator: `( ) , ; . * = < > <= >= != ? : [ ] { } + -`.
    Symbol(&'static str),
    /// The end of the text.
    End,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Identifier(name) => write!(f, "'{name}'"),
            TokenKind::QuotedIdentifier(name) => write!(f, "'\"{name}\"'"),
            TokenKind::String(text) => write!(f, "string '{text}'"),
            TokenKind::Integer(digits) | TokenKind::Float(digits) => write!(f, "'{digits}'"),
            TokenKind::Uuid(uuid) => write!(f, "'{uuid}'"),
            TokenKind::Blob(bytes) => write!(f, "'0x{}'", hex::encode(bytes)),
            TokenKind::Symbol(symbol) => write!(f, "'{symbol}'"),
            TokenKind::End => f.write_str("the end of the statement"),
        }
    }
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it starts.
    pub position: Position,
    /// Its byte offset in the text.
    pub offset: usize,
}

/// Symbols of two characters, tried before those of one.
const SYMBOLS_2: [&str; 3] = ["<=", ">=", "!="];
const SYMBOLS_1: [&str; 17] = [
    "(", ")", ",", ";", ".", "*", "=", "<", ">", "?", ":", "[", "]", "{", "}", "+", "-",
];

/// Splits `text` into tokens, ending with [`TokenKind::End`].
pub fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer {
        text,
        offset: 0,
        position: Position { line: 1, column: 1 },
    };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_blanks_and_comments()?;
        let (position, offset) = (lexer.position, lexer.offset);
        let Some(kind) = lexer.next_kind()? else {
            tokens.push(Token {
                kind: TokenKind::End,
                position,
                offset,
            });
            return Ok(tokens);
        };
        tokens.push(Token {
            kind,
            position,
            offset,
        });
    }
}

struct Lexer<'a> {
    text: &'a str,
    offset: usize,
    position: Position,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.text[self.offset..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        if c == '\n' {
            self.position.line += 1;
            self.position.column = 1;
        } else {
            self.position.column += 1;
        }
        Some(c)
    }

    fn bump_n(&mut self, bytes: usize) {
        let end = self.offset + bytes;
        while self.offset < end {
            self.bump();
        }
    }

    fn error(&self, position: Position, message: impl Into<String>) -> ParseError {
        ParseError::Syntax {
            position,
            message: message.into(),
        }
    }

    fn skip_blanks_and_comments(&mut self) -> Result<(), ParseError> {
        loop {
            let rest = self.rest();
            if rest.starts_with("--") || rest.starts_with("//") {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else if let Some(comment) = rest.strip_prefix("/*") {
                let start = self.position;
                let Some(end) = comment.find("*/") else {
                    return Err(self.error(start, "unterminated comment"));
                };
                self.bump_n(end + 4);
            } else if self.peek().is_some_and(char::is_whitespace) {
                self.bump();
            } else {
                return Ok(());
            }
        }
    }

    fn next_kind(&mut self) -> Result<Option<TokenKind>, ParseError> {
        let Some(c) = self.peek() else {
            return Ok(None);
        };
        let start = self.position;
        if let Some(uuid) = self.uuid() {
            return Ok(Some(TokenKind::Uuid(uuid)));
        }
        let rest = self.rest();
        if rest.starts_with("0x") || rest.starts_with("0X") {
            return self.blob().map(Some);
        }
        if c.is_ascii_digit() {
            return Ok(Some(self.number()));
        }
        if c.is_alphabetic() || c == '_' {
            let length = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let word = rest[..length].to_string();
            self.bump_n(length);
            return Ok(Some(TokenKind::Identifier(word)));
        }
        if c == '\'' || c == '"' {
            let text = self.quoted(c)?;
            return Ok(Some(if c == '"' {
                TokenKind::QuotedIdentifier(text)
            } else {
                TokenKind::String(text)
            }));
        }
        if let Some(string) = rest.strip_prefix("$$") {
            let Some(end) = string.find("$$") else {
                return Err(self.error(start, "unterminated $$ string"));
            };
            let text = string[..end].to_string();
            self.bump_n(end + 4);
            return Ok(Some(TokenKind::String(text)));
        }
        if let Some(symbol) = SYMBOLS_2
            .iter()
            .chain(SYMBOLS_1.iter())
            .find(|s| rest.starts_with(**s))
        {
            self.bump_n(symbol.len());
            return Ok(Some(TokenKind::Symbol(symbol)));
        }
        Err(self.error(start, format!("unexpected character '{c}'")))
    }

    /// A UUID constant (`8-4-4-4-12` hex digits) where one starts.
    fn uuid(&mut self) -> Option<Uuid> {
        let candidate = self.rest().get(..36)?;
        let shape = candidate.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
        // Not the start of a longer word.
        let after = self.rest()[36..].chars().next();
        if !shape || after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let uuid = candidate.parse().ok()?;
        self.bump_n(36);
        Some(uuid)
    }

    fn blob(&mut self) -> Result<TokenKind, ParseError> {
        let start = self.position;
        let rest = &self.rest()[2..];
        let length = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let digits = rest[..length].to_string();
        self.bump_n(2 + length);
        let bytes = hex::decode(&digits).map_err(|_| {
            self.error(
                start,
                format!("'0x{digits}' is not a blob: an even number of hex digits is needed"),
            )
        })?;
        Ok(TokenKind::Blob(bytes))
    }

    /// Digits, then an optional fraction and exponent.
    fn number(&mut self) -> TokenKind {
        let rest = self.rest();
        let bytes = rest.as_bytes();
        let digits = |from: usize| {
            from + bytes[from..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let mut end = digits(0);
        let mut float = false;
        if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end = digits(end + 1);
            float = true;
        }
        if matches!(bytes.get(end), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
            if bytes.get(end + 1 + sign).is_some_and(u8::is_ascii_digit) {
                end = digits(end + 1 + sign);
                float = true;
            }
        }
        let text = rest[..end].to_string();
        self.bump_n(end);
        if float {
            TokenKind::Float(text)
        } else {
            TokenKind::Integer(text)
        }
    }

    /// A string or quoted identifier: the quote doubled inside stands for itself.
    fn quoted(&mut self, quote: char) -> Result<String, ParseError> {
        let start = self.position;
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    let what = if quote == '"' {
                        "quoted name"
                    } else {
                        "string"
                    };
                    return Err(self.error(start, format!("unterminated {what}")));
                }
                Some(c) if c == quote => {
                    if self.peek() == Some(quote) {
                        self.bump();
                        text.push(quote);
                    } else {
                        return Ok(text);
                    }
                }
                Some(c) => text.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn tokens_of_a_statement() {
        use TokenKind::*;
        assert_eq!(
            kinds("SELECT \"Name\", 'it''s' FROM ks.t WHERE k >= -1.5e3 AND id = 0xCAFE;"),
            [
                Identifier("SELECT".into()),
                QuotedIdentifier("Name".into()),
                Symbol(","),
                String("it's".into()),
                Identifier("FROM".into()),
                Identifier("ks".into()),
                Symbol("."),
                Identifier("t".into()),
                Identifier("WHERE".into()),
                Identifier("k".into()),
                Symbol(">="),
                Symbol("-"),
                Float("1.5e3".into()),
                Identifier("AND".into()),
                Identifier("id".into()),
                Symbol("="),
                Blob(vec![0xca, 0xfe]),
                Symbol(";"),
                End,
            ]
        );
    }

    #[test]
    fn uuids_numbers_and_comments() {
        use TokenKind::*;
        let uuid = "123e4567-e89b-12d3-a456-426614174000";
        assert_eq!(
            kinds(&format!(
                "{uuid} 123e4 42 -- comment\n/* block\n */ $$a'b$$ 1."
            )),
            [
                Uuid(uuid.parse().unwrap()),
                Float("123e4".into()),
                Integer("42".into()),
                String("a'b".into()),
                Integer("1".into()),
                Symbol("."),
                End,
            ]
        );
    }

    #[test]
    fn positions_count_lines_and_characters() {
        let tokens = tokenize("SELECT\n  été, x").unwrap();
        let positions: Vec<String> = tokens.iter().map(|t| t.position.to_string()).collect();
        assert_eq!(positions, ["1:1", "2:3", "2:6", "2:8", "2:9"]);
    }

    #[test]
    fn lexical_errors_point_at_where_they_start() {
        let error = tokenize("SELECT 'abc FROM t").unwrap_err();
        assert_eq!(error.to_string(), "line 1:8: unterminated string");
        let error = tokenize("SELECT a\nFROM t WHERE k = 0x123").unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2:18: '0x123' is not a blob: an even number of hex digits is needed"
        );
        let error = tokenize("SELECT # FROM t").unwrap_err();
        assert_eq!(error.to_string(), "line 1:8: unexpected character '#'");
    }
}
