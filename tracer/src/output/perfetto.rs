//! Perfetto trace output (protobuf `Trace` of `TracePacket`s with `TrackEvent`s).
//! STUB: filled in separately.

use std::{fs::File, io, io::BufWriter, path::Path};

use super::{AttemptView, EventView, Output};
use crate::summary::Summary;

pub struct PerfettoOutput {
    _out: BufWriter<File>,
}

impl PerfettoOutput {
    pub fn create(path: &Path) -> io::Result<PerfettoOutput> {
        Ok(PerfettoOutput {
            _out: BufWriter::new(File::create(path)?),
        })
    }
}

impl Output for PerfettoOutput {
    fn event(&mut self, _view: &EventView<'_>) -> io::Result<()> {
        Ok(())
    }
    fn attempt(&mut self, _view: &AttemptView<'_>) -> io::Result<()> {
        Ok(())
    }
    fn summary(&mut self, _summary: &Summary) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
