//! TEMPORARY stand-in: runtime struct offsets (replaced by the DWARF/table module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeOffsets {
    pub g_goid: u32,
}
