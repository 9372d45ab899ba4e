//! Enough of ECMA-262 regular expressions to tell which `patternProperties`
//! cover a property name.
//!
//! Literals, `.`, classes (`[a-z]`, `[^_]`, `\d`, `\w`, `\s` and their
//! negations), anchors, groups with `|`, and the quantifiers `* + ? {n}
//! {n,} {n,m}` (lazy forms too: only whether a name matches counts).
//! Anything else (look-around, back-references, `\b`, `\p{..}`) is refused,
//! and the checker then declines to judge rather than guess.
//!
//! A pattern is compiled to a small program and run as a Thompson automaton
//! (Pike's VM): every character of the name is read once, with the set of
//! program positions still alive, so neither the stack nor the time grows
//! with backtracking, and a 50,000-character name costs 50,000 steps times
//! the program's length, in a loop.

/// How many instructions one match may execute before the matcher gives up
/// (a very long name against a long pattern).
const STEP_LIMIT: usize = 2_000_000;

/// The longest program a pattern may compile to (`{n,m}` repeats its atom).
const MAX_PROGRAM: usize = 10_000;

/// A parsed pattern.
#[derive(Debug)]
pub(crate) struct Pattern {
    program: Vec<Inst>,
}

/// One instruction of the compiled pattern.
#[derive(Debug)]
enum Inst {
    /// Read one character the atom (a literal, `.` or a class) accepts.
    Single(Atom),
    /// Continue at both.
    Split(usize, usize),
    Jump(usize),
    /// `^`: only at the start of the name.
    Start,
    /// `$`: only at the end of the name.
    End,
    Match,
}

#[derive(Clone, Debug)]
struct Piece {
    atom: Atom,
    min: usize,
    max: usize,
}

#[derive(Clone, Debug)]
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

#[derive(Clone, Debug)]
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
        let mut program = Vec::new();
        compile_alternatives(&alternatives, &mut program)?;
        emit(&mut program, Inst::Match)?;
        Ok(Pattern { program })
    }

    /// Whether the pattern matches anywhere in `text` (JSON Schema patterns
    /// are not implicitly anchored); `None` when deciding takes more steps
    /// than the checker allows.
    pub(crate) fn is_match(&self, text: &str) -> Option<bool> {
        let chars: Vec<char> = text.chars().collect();
        let mut vm = Vm {
            program: &self.program,
            len: chars.len(),
            listed: vec![usize::MAX; self.program.len()],
            stack: Vec::new(),
            steps: 0,
        };
        let mut current: Vec<usize> = Vec::new();
        let mut next: Vec<usize> = Vec::new();
        for pos in 0..=chars.len() {
            // Not anchored: a match may start at every position.
            if vm.add(0, pos, &mut current)? {
                return Some(true);
            }
            let Some(&c) = chars.get(pos) else {
                break;
            };
            next.clear();
            for &pc in &current {
                if let Inst::Single(atom) = &self.program[pc] {
                    if single_matches(atom, c) && vm.add(pc + 1, pos + 1, &mut next)? {
                        return Some(true);
                    }
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        Some(false)
    }
}

/// Appends `inst`, or refuses a pattern whose program grows too long.
fn emit(program: &mut Vec<Inst>, inst: Inst) -> Result<usize, Unsupported> {
    if program.len() >= MAX_PROGRAM {
        return Err(Unsupported);
    }
    program.push(inst);
    Ok(program.len() - 1)
}

/// Points the jumps and splits at `holes` (emitted with a placeholder
/// target `usize::MAX`) to `target`.
fn patch(program: &mut [Inst], holes: &[usize], target: usize) {
    for &hole in holes {
        match &mut program[hole] {
            Inst::Jump(to) => *to = target,
            Inst::Split(_, to) => *to = target,
            _ => {}
        }
    }
}

fn compile_alternatives(
    alternatives: &[Vec<Piece>],
    program: &mut Vec<Inst>,
) -> Result<(), Unsupported> {
    let mut to_end = Vec::new();
    for (i, sequence) in alternatives.iter().enumerate() {
        if i + 1 == alternatives.len() {
            compile_sequence(sequence, program)?;
        } else {
            let split = emit(program, Inst::Split(program.len() + 1, usize::MAX))?;
            compile_sequence(sequence, program)?;
            to_end.push(emit(program, Inst::Jump(usize::MAX))?);
            let here = program.len();
            patch(program, &[split], here);
        }
    }
    let end = program.len();
    patch(program, &to_end, end);
    Ok(())
}

fn compile_sequence(sequence: &[Piece], program: &mut Vec<Inst>) -> Result<(), Unsupported> {
    for piece in sequence {
        for _ in 0..piece.min {
            compile_atom(&piece.atom, program)?;
        }
        if piece.max == usize::MAX {
            let split = emit(program, Inst::Split(program.len() + 1, usize::MAX))?;
            compile_atom(&piece.atom, program)?;
            emit(program, Inst::Jump(split))?;
            let out = program.len();
            patch(program, &[split], out);
        } else {
            let mut skips = Vec::new();
            for _ in piece.min..piece.max {
                skips.push(emit(program, Inst::Split(program.len() + 1, usize::MAX))?);
                compile_atom(&piece.atom, program)?;
            }
            let out = program.len();
            patch(program, &skips, out);
        }
    }
    Ok(())
}

fn compile_atom(atom: &Atom, program: &mut Vec<Inst>) -> Result<(), Unsupported> {
    match atom {
        Atom::Group(inner) => compile_alternatives(inner, program),
        Atom::Start => emit(program, Inst::Start).map(drop),
        Atom::End => emit(program, Inst::End).map(drop),
        single => emit(program, Inst::Single(single.clone())).map(drop),
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

/// The state of one run of a program over a name.
struct Vm<'p> {
    program: &'p [Inst],
    len: usize,
    /// For each instruction, the position of the list it was last added to.
    listed: Vec<usize>,
    /// Instructions still to follow while adding a thread (an explicit
    /// stack, not recursion).
    stack: Vec<usize>,
    steps: usize,
}

impl Vm<'_> {
    /// Adds the thread at `pc` to the list of threads waiting at `pos`,
    /// following jumps, splits and anchors. `Some(true)` when it reaches
    /// the end of the pattern, `None` past the step limit.
    fn add(&mut self, pc: usize, pos: usize, list: &mut Vec<usize>) -> Option<bool> {
        self.stack.push(pc);
        while let Some(pc) = self.stack.pop() {
            if self.listed[pc] == pos {
                continue;
            }
            self.listed[pc] = pos;
            self.steps += 1;
            if self.steps > STEP_LIMIT {
                self.stack.clear();
                return None;
            }
            match self.program[pc] {
                Inst::Single(_) => list.push(pc),
                Inst::Split(a, b) => {
                    self.stack.push(b);
                    self.stack.push(a);
                }
                Inst::Jump(to) => self.stack.push(to),
                Inst::Start => {
                    if pos == 0 {
                        self.stack.push(pc + 1);
                    }
                }
                Inst::End => {
                    if pos == self.len {
                        self.stack.push(pc + 1);
                    }
                }
                Inst::Match => {
                    self.stack.clear();
                    return Some(true);
                }
            }
        }
        Some(false)
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
    fn catastrophic_backtracking_patterns_take_linear_time() {
        let pattern = Pattern::parse("^(a*)*b$").unwrap();
        assert_eq!(pattern.is_match(&"a".repeat(40)), Some(false));
        assert_eq!(pattern.is_match("aab"), Some(true));
        assert_eq!(
            Pattern::parse("(x+x+)+y")
                .unwrap()
                .is_match(&"x".repeat(5_000)),
            Some(false)
        );
    }

    #[test]
    fn long_names_need_no_stack() {
        // One stack frame per character overflowed a 2 MiB thread here.
        let name = "a".repeat(50_000);
        let run = move || {
            for (pattern, expected) in [
                ("^[a-z]+$", Some(true)),
                ("^a*b", Some(false)),
                ("(a|b)*c", Some(false)),
                ("a{2,5}$", Some(true)),
            ] {
                let found = Pattern::parse(pattern).unwrap().is_match(&name);
                assert_eq!(found, expected, "{pattern}");
            }
            // A long pattern against a long name: past the step limit.
            let long = format!("{}c", "(?:a|b)".repeat(1_000));
            assert_eq!(Pattern::parse(&long).unwrap().is_match(&name), None);
        };
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn counted_repeats_that_explode_are_refused() {
        assert_eq!(
            Pattern::parse("((a{1000}){1000}){1000}").err(),
            Some(Unsupported)
        );
        assert!(matches("^(ab){2}$", "abab"));
        assert!(!matches("^(ab){2}$", "ababab"));
        assert!(matches("^a{0,2}$", ""));
        assert!(!matches("^a{0,2}$", "aaa"));
        assert!(matches("^(a|)+$", "aaa"));
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
