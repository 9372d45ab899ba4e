//! Enough of ECMA-262 regular expressions to tell which `patternProperties`
//! cover a property name.
//!
//! Literals, `.`, classes (`[a-z]`, `[^_]`, `\d`, `\w`, `\s` and their
//! negations), anchors, groups with `|`, and the quantifiers `* + ? {n}
//! {n,} {n,m}` (lazy forms too: only whether a name matches counts).
//! Anything else (look-around, back-references, `\b`, `\p{..}`) is refused,
//! and the checker then declines to judge rather than guess.

use std::cell::Cell;

/// How many atoms a match may try before the matcher gives up on a
/// pathological pattern (`(a*)*b` against a long run of `a`s).
const STEP_LIMIT: usize = 100_000;

/// A parsed pattern.
#[derive(Debug)]
pub(crate) struct Pattern {
    alternatives: Vec<Vec<Piece>>,
}

#[derive(Debug)]
struct Piece {
    atom: Atom,
    min: usize,
    max: usize,
}

#[derive(Debug)]
enum Atom {
    Char(char),
    Any,
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
    Group(Vec<Vec<Piece>>),
    Start,
    End,
}

#[derive(Debug)]
enum ClassItem {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

/// Why a pattern was not parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unsupported;

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Pattern {
    pub(crate) fn parse(source: &str) -> Result<Pattern, Unsupported> {
        let mut parser = Parser {
            chars: source.chars().collect(),
            pos: 0,
        };
        let alternatives = parser.alternatives(0)?;
        if parser.pos != parser.chars.len() {
            return Err(Unsupported);
        }
        Ok(Pattern { alternatives })
    }

    /// Whether the pattern matches anywhere in `text` (JSON Schema patterns
    /// are not implicitly anchored); `None` when deciding takes more
    /// backtracking than the checker allows.
    pub(crate) fn is_match(&self, text: &str) -> Option<bool> {
        let chars: Vec<char> = text.chars().collect();
        let matcher = Matcher {
            text: &chars,
            steps: Cell::new(0),
        };
        let found = (0..=chars.len())
            .any(|start| matcher.alternatives(&self.alternatives, start, &mut |_| true));
        (matcher.steps.get() <= STEP_LIMIT).then_some(found)
    }
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }

    fn alternatives(&mut self, depth: usize) -> Result<Vec<Vec<Piece>>, Unsupported> {
        if depth > 32 {
            return Err(Unsupported);
        }
        let mut alternatives = vec![self.sequence(depth)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alternatives.push(self.sequence(depth)?);
        }
        Ok(alternatives)
    }

    fn sequence(&mut self, depth: usize) -> Result<Vec<Piece>, Unsupported> {
        let mut pieces = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom(depth)?;
            let (min, max) = self.quantifier()?;
            if matches!(atom, Atom::Start | Atom::End) && (min, max) != (1, 1) {
                return Err(Unsupported);
            }
            pieces.push(Piece { atom, min, max });
        }
        Ok(pieces)
    }

    fn atom(&mut self, depth: usize) -> Result<Atom, Unsupported> {
        match self.next().ok_or(Unsupported)? {
            '^' => Ok(Atom::Start),
            '$' => Ok(Atom::End),
            '.' => Ok(Atom::Any),
            '(' => {
                if self.peek() == Some('?') {
                    // Only non-capturing groups.
                    if self.chars.get(self.pos + 1) != Some(&':') {
                        return Err(Unsupported);
                    }
                    self.pos += 2;
                }
                let inner = self.alternatives(depth + 1)?;
                if self.next() != Some(')') {
                    return Err(Unsupported);
                }
                Ok(Atom::Group(inner))
            }
            '[' => self.class(),
            '\\' => match self.escape()? {
                Escaped::Char(c) => Ok(Atom::Char(c)),
                Escaped::Class(item) => Ok(Atom::Class {
                    negated: false,
                    items: vec![item],
                }),
            },
            '*' | '+' | '?' | '{' | ')' | ']' | '}' => Err(Unsupported),
            c => Ok(Atom::Char(c)),
        }
    }

    fn class(&mut self) -> Result<Atom, Unsupported> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = self.next().ok_or(Unsupported)?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let low = match c {
                '\\' => match self.escape()? {
                    Escaped::Char(c) => c,
                    Escaped::Class(item) => {
                        items.push(item);
                        continue;
                    }
                },
                '[' => return Err(Unsupported),
                c => c,
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&c| c != ']') {
                self.pos += 1;
                let high = match self.next().ok_or(Unsupported)? {
                    '\\' => match self.escape()? {
                        Escaped::Char(c) => c,
                        Escaped::Class(_) => return Err(Unsupported),
                    },
                    c => c,
                };
                if high < low {
                    return Err(Unsupported);
                }
                items.push(ClassItem::Range(low, high));
            } else {
                items.push(ClassItem::Range(low, low));
            }
        }
        Ok(Atom::Class { negated, items })
    }

    fn escape(&mut self) -> Result<Escaped, Unsupported> {
        let c = self.next().ok_or(Unsupported)?;
        Ok(match c {
            'd' => Escaped::Class(ClassItem::Digit(true)),
            'D' => Escaped::Class(ClassItem::Digit(false)),
            'w' => Escaped::Class(ClassItem::Word(true)),
            'W' => Escaped::Class(ClassItem::Word(false)),
            's' => Escaped::Class(ClassItem::Space(true)),
            'S' => Escaped::Class(ClassItem::Space(false)),
            'n' => Escaped::Char('\n'),
            't' => Escaped::Char('\t'),
            'r' => Escaped::Char('\r'),
            'f' => Escaped::Char('\u{c}'),
            'v' => Escaped::Char('\u{b}'),
            '0' => Escaped::Char('\0'),
            'u' => {
                let hex: String = (0..4)
                    .map(|_| self.next())
                    .collect::<Option<_>>()
                    .ok_or(Unsupported)?;
                let code = u32::from_str_radix(&hex, 16).map_err(|_| Unsupported)?;
                Escaped::Char(char::from_u32(code).ok_or(Unsupported)?)
            }
            c if c.is_ascii_alphanumeric() => return Err(Unsupported),
            c => Escaped::Char(c),
        })
    }

    fn quantifier(&mut self) -> Result<(usize, usize), Unsupported> {
        let bounds = match self.peek() {
            Some('*') => (0, usize::MAX),
            Some('+') => (1, usize::MAX),
            Some('?') => (0, 1),
            Some('{') => {
                self.pos += 1;
                let min = self.number().ok_or(Unsupported)?;
                let max = if self.peek() == Some(',') {
                    self.pos += 1;
                    if self.peek() == Some('}') {
                        usize::MAX
                    } else {
                        self.number().ok_or(Unsupported)?
                    }
                } else {
                    min
                };
                if self.peek() != Some('}') || max < min {
                    return Err(Unsupported);
                }
                self.pos += 1;
                if self.peek() == Some('?') {
                    self.pos += 1;
                }
                return Ok((min, max));
            }
            _ => return Ok((1, 1)),
        };
        self.pos += 1;
        if self.peek() == Some('?') {
            self.pos += 1;
        }
        Ok(bounds)
    }

    fn number(&mut self) -> Option<usize> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits: String = self.chars[start..self.pos].iter().collect();
        digits.parse().ok().filter(|n| *n <= 1000)
    }
}

enum Escaped {
    Char(char),
    Class(ClassItem),
}

struct Matcher<'t> {
    text: &'t [char],
    steps: Cell<usize>,
}

impl Matcher<'_> {
    fn alternatives(
        &self,
        alternatives: &[Vec<Piece>],
        pos: usize,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        alternatives.iter().any(|seq| self.sequence(seq, pos, k))
    }

    fn sequence(&self, seq: &[Piece], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        match seq.split_first() {
            None => k(pos),
            Some((piece, rest)) => {
                self.repeat(piece, 0, pos, &mut |next| self.sequence(rest, next, k))
            }
        }
    }

    fn repeat(
        &self,
        piece: &Piece,
        count: usize,
        pos: usize,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        if count < piece.max {
            let more = self.atom(&piece.atom, pos, &mut |next| {
                // An empty repetition past the minimum cannot help.
                (next != pos || count < piece.min) && self.repeat(piece, count + 1, next, k)
            });
            if more {
                return true;
            }
        }
        count >= piece.min && k(pos)
    }

    fn atom(&self, atom: &Atom, pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        let steps = self.steps.get() + 1;
        self.steps.set(steps);
        if steps > STEP_LIMIT {
            return false;
        }
        match atom {
            Atom::Start => pos == 0 && k(pos),
            Atom::End => pos == self.text.len() && k(pos),
            Atom::Group(inner) => self.alternatives(inner, pos, k),
            single => match self.text.get(pos) {
                Some(&c) if single_matches(single, c) => k(pos + 1),
                _ => false,
            },
        }
    }
}

fn single_matches(atom: &Atom, c: char) -> bool {
    match atom {
        Atom::Char(expected) => c == *expected,
        Atom::Any => !matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}'),
        Atom::Class { negated, items } => {
            items.iter().any(|item| item_matches(item, c)) != *negated
        }
        Atom::Group(_) | Atom::Start | Atom::End => false,
    }
}

fn item_matches(item: &ClassItem, c: char) -> bool {
    match item {
        ClassItem::Range(low, high) => (*low..=*high).contains(&c),
        ClassItem::Digit(yes) => c.is_ascii_digit() == *yes,
        ClassItem::Word(yes) => (c.is_ascii_alphanumeric() || c == '_') == *yes,
        ClassItem::Space(yes) => c.is_whitespace() == *yes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        match Pattern::parse(pattern).map(|p| p.is_match(text)) {
            Ok(Some(found)) => found,
            other => panic!("{pattern}: {other:?}"),
        }
    }

    #[test]
    fn common_patterns() {
        assert!(matches("^S_", "S_name"));
        assert!(!matches("^S_", "xS_name"));
        assert!(matches("S_", "xS_name"));
        assert!(matches("^[a-z]+$", "abc"));
        assert!(!matches("^[a-z]+$", "abC"));
        assert!(matches("^(foo|bar)_\\d{2,3}$", "bar_123"));
        assert!(!matches("^(foo|bar)_\\d{2,3}$", "bar_1234"));
        assert!(matches("^x-", "x-trace"));
        assert!(matches("^[^_]", "a_"));
        assert!(!matches("^[^_]", "_a"));
        assert!(matches("^a*?b$", "aab"));
        assert!(matches("^(?:ab)+$", "abab"));
        assert!(matches("", "anything"));
        assert!(matches("^\\.\\w+$", ".name_1"));
        assert!(matches("(a*)*b", "aaab"));
    }

    #[test]
    fn catastrophic_backtracking_gives_up() {
        let pattern = Pattern::parse("^(a*)*b$").unwrap();
        assert_eq!(pattern.is_match(&"a".repeat(40)), None);
        assert_eq!(pattern.is_match("aab"), Some(true));
    }

    #[test]
    fn unsupported_syntax_is_refused() {
        for pattern in [
            "(?=a)", "\\1", "\\bword", "\\p{L}", "[a", "(a", "a{3,1}", "*a",
        ] {
            assert_eq!(
                Pattern::parse(pattern).err(),
                Some(Unsupported),
                "{pattern}"
            );
        }
    }
}
