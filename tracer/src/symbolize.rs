//! Runtime PCs → function and file:line, through the binary's pclntab, with the load bias
//! of a PIE executable removed. Cached: a spinning goroutine is interrupted at the same
//! few PCs thousands of times.

use std::{collections::HashMap, rc::Rc, sync::Arc};

use crate::gobin::GoBinary;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    /// Innermost function (an inlined one where the inline tree says so).
    pub function: String,
    pub file: String,
    pub line: u32,
    /// The physical function containing the PC, when `function` was inlined into it.
    pub inlined_into: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.rsplit('/').next().unwrap_or(&self.file);
        if file.is_empty() {
            write!(f, "{}", self.function)
        } else {
            write!(f, "{} ({}:{})", self.function, file, self.line)
        }
    }
}

pub struct Symbolizer {
    binary: Arc<GoBinary>,
    bias: u64,
    cache: HashMap<u64, Option<Rc<Location>>>,
}

impl Symbolizer {
    pub fn new(binary: Arc<GoBinary>, bias: u64) -> Symbolizer {
        Symbolizer {
            binary,
            bias,
            cache: HashMap::new(),
        }
    }

    /// Location of the instruction at runtime address `pc` (an interrupted PC).
    pub fn locate(&mut self, pc: u64) -> Option<Rc<Location>> {
        let Symbolizer {
            binary,
            bias,
            cache,
        } = self;
        cache
            .entry(pc)
            .or_insert_with(|| {
                let frames = binary.symbolize(pc.checked_sub(*bias)?);
                let innermost = frames.first()?;
                let physical = frames.last()?;
                Some(Rc::new(Location {
                    function: innermost.function.clone(),
                    file: innermost.file.clone(),
                    line: innermost.line,
                    inlined_into: innermost.inlined.then(|| physical.function.clone()),
                }))
            })
            .clone()
    }

    /// Location of the call whose return address is `return_pc`.
    pub fn locate_caller(&mut self, return_pc: u64) -> Option<Rc<Location>> {
        self.locate(return_pc.checked_sub(1)?)
    }
}
