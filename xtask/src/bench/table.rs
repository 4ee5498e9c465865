//! The bench's one table: a row per figure, each the median of per-repetition results
//! with their spread, next to the baseline it was measured against and the goal.

use std::fmt::Write as _;

/// Per-repetition results summarised.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stat {
    /// `None` when there is no finite value.
    pub fn of(values: &[f64]) -> Option<Stat> {
        let mut values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: values[0],
            max: values[n - 1],
            n,
        })
    }
}

/// What a row should reach.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Goal::AtLeast(goal) => value >= goal,
            Goal::AtMost(goal) => value <= goal,
        }
    }
}

/// How a row's value reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// goprobe / baseline.
    Ratio,
    Nanos,
    Millis,
    MiB,
    Percent,
    PerSecond,
}

impl Unit {
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Ratio => format!("{value:.3}"),
            Unit::Nanos => format!("{value:.0} ns"),
            Unit::Millis => format!("{value:.0} ms"),
            Unit::MiB => format!("{value:.1} MiB"),
            Unit::Percent => format!("{value:.1}%"),
            Unit::PerSecond => si(value) + "/s",
        }
    }
}

/// 1234567 → "1.23 M".
pub fn si(value: f64) -> String {
    let (scaled, prefix) = if value.abs() >= 1e6 {
        (value / 1e6, " M")
    } else if value.abs() >= 1e3 {
        (value / 1e3, " k")
    } else {
        (value, " ")
    };
    format!("{scaled:.3}{prefix}").trim_end().to_string()
}

#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    /// The baseline measured in the same run (its median), or what the row is against.
    pub baseline: String,
    /// The measured side (its median), as a reader would say it.
    pub measured: String,
    pub unit: Unit,
    pub value: Option<Stat>,
    pub goal: Option<Goal>,
}

impl Row {
    pub fn new(name: impl Into<String>, unit: Unit, values: &[f64]) -> Row {
        Row {
            name: name.into(),
            baseline: String::new(),
            measured: String::new(),
            unit,
            value: Stat::of(values),
            goal: None,
        }
    }

    pub fn baseline(mut self, text: impl Into<String>) -> Row {
        self.baseline = text.into();
        self
    }

    pub fn measured(mut self, text: impl Into<String>) -> Row {
        self.measured = text.into();
        self
    }

    pub fn goal(mut self, goal: Goal) -> Row {
        self.goal = Some(goal);
        self
    }
}

#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    pub fn extend(&mut self, rows: Vec<Row>) {
        self.rows.extend(rows);
    }

    pub fn render(&self) -> String {
        let header = [
            "row", "baseline", "measured", "result", "spread", "goal", "",
        ];
        let cells: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|row| {
                let (result, spread) = match row.value {
                    Some(stat) => (
                        row.unit.format(stat.median),
                        format!(
                            "{}–{} (n={})",
                            row.unit.format(stat.min),
                            row.unit.format(stat.max),
                            stat.n
                        ),
                    ),
                    None => ("-".into(), "no measurement".into()),
                };
                let (goal, met) = match (row.goal, row.value) {
                    (Some(goal), value) => {
                        let text = match goal {
                            Goal::AtLeast(g) => format!("≥ {}", row.unit.format(g)),
                            Goal::AtMost(g) => format!("≤ {}", row.unit.format(g)),
                        };
                        let met = match value {
                            Some(stat) if goal.met(stat.median) => "met",
                            Some(_) => "NOT MET",
                            None => "?",
                        };
                        (text, met.to_string())
                    }
                    (None, _) => (String::new(), String::new()),
                };
                [
                    row.name.clone(),
                    row.baseline.clone(),
                    row.measured.clone(),
                    result,
                    spread,
                    goal,
                    met,
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[&str]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i == 0 || i == 6 {
                    let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
                } else {
                    let _ = write!(text, "{}{cell}  ", " ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&mut out, &header);
        for row in &cells {
            let refs: Vec<&str> = row.iter().map(String::as_str).collect();
            line(&mut out, &refs);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let stat = Stat::of(&[3.0, 1.0, f64::NAN, 2.0, 10.0]).unwrap();
        assert_eq!(
            (stat.median, stat.min, stat.max, stat.n),
            (2.5, 1.0, 10.0, 4)
        );
        assert!(Stat::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn goals_are_judged_on_the_median() {
        let mut table = Table::default();
        table.extend(vec![
            Row::new("a", Unit::Ratio, &[0.99, 1.0, 0.98]).goal(Goal::AtLeast(0.985)),
            Row::new("b", Unit::Millis, &[120.0]).goal(Goal::AtMost(100.0)),
        ]);
        let text = table.render();
        assert!(text.lines().nth(1).unwrap().ends_with("met"), "{text}");
        assert!(text.lines().nth(2).unwrap().ends_with("NOT MET"), "{text}");
    }
}
