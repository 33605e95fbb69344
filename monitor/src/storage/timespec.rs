//! Times on the command line: `--last 2h|7d|3mo` and `--since`/`--until` as RFC 3339 or local
//! `YYYY-MM-DD HH:MM[:SS]` (or a bare `YYYY-MM-DD`, midnight).
use chrono::{
    DateTime, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};

/// A time or duration that could not be understood; the message says what is expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimeError(String);

const TIME_FORMS: &str = "expected RFC 3339 (2026-05-01T14:00:00Z, 2026-05-01T16:00:00+02:00) \
    or local time as YYYY-MM-DD HH:MM, YYYY-MM-DD HH:MM:SS or YYYY-MM-DD";

const DURATION_FORMS: &str = "expected a whole number and a unit: s, m (minutes), h, d, w, mo \
    (months) or y, e.g. 30m, 2h, 7d, 3mo";

/// A span back from now, as `--last` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Exact(Duration),
    Months(u32),
}

impl Span {
    /// `now` minus the span (calendar months for `mo` and `y`).
    pub fn before(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Span::Exact(d) => now.checked_sub_signed(d),
            Span::Months(m) => now.checked_sub_months(Months::new(m)),
        }
    }

    /// A rough length, for choosing hourly or daily statistics.
    pub fn approx(self) -> Duration {
        match self {
            Span::Exact(d) => d,
            Span::Months(m) => Duration::days(30 * i64::from(m)),
        }
    }
}

/// Parses `2h`, `7d`, `3mo`, `1y`, `90s`, `15m`, `2w` (also `2 h`, `2hours`, `3months`).
pub fn parse_span(text: &str) -> Result<Span, TimeError> {
    let t = text.trim();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return Err(TimeError(format!(
            "`{text}` is not a duration: it must start with a number; {DURATION_FORMS}"
        )));
    }
    let (number, unit) = t.split_at(digits);
    let n: i64 = number
        .parse()
        .map_err(|_| TimeError(format!("`{text}`: the number is too large")))?;
    if n == 0 {
        return Err(TimeError(format!(
            "`{text}`: the duration must be more than zero"
        )));
    }
    let unit = unit.trim().to_ascii_lowercase();
    let too_large = || TimeError(format!("`{text}`: the duration is too large"));
    let secs = |per: i64| -> Result<Span, TimeError> {
        n.checked_mul(per)
            .and_then(Duration::try_seconds)
            .map(Span::Exact)
            .ok_or_else(too_large)
    };
    let months = |per: i64| -> Result<Span, TimeError> {
        n.checked_mul(per)
            .and_then(|m| u32::try_from(m).ok())
            .map(Span::Months)
            .ok_or_else(too_large)
    };
    match unit.as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => secs(1),
        "m" | "min" | "mins" | "minute" | "minutes" => secs(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => secs(3600),
        "d" | "day" | "days" => secs(86_400),
        "w" | "week" | "weeks" => secs(7 * 86_400),
        "mo" | "month" | "months" => months(1),
        "y" | "year" | "years" => months(12),
        "" => Err(TimeError(format!("`{text}` has no unit; {DURATION_FORMS}"))),
        other => Err(TimeError(format!(
            "`{text}`: unknown unit `{other}`; {DURATION_FORMS}"
        ))),
    }
}

/// Parses a time: RFC 3339 (any offset), or a local date and time in `tz`.
pub fn parse_time<Tz: TimeZone>(text: &str, tz: &Tz) -> Result<DateTime<Utc>, TimeError> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_time(NaiveTime::MIN))
    });
    let Some(naive) = local else {
        return Err(TimeError(format!(
            "`{text}` is not a time{}; {TIME_FORMS}",
            why_not(t)
        )));
    };
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(at) => Ok(at.with_timezone(&Utc)),
        // A repeated hour (clocks going back): the first of the two.
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => Err(TimeError(format!(
            "`{text}` does not exist in the local time zone (the clocks skip it); give an \
             RFC 3339 time with an offset instead"
        ))),
    }
}

/// Why a date-like text failed, when chrono can say (e.g. "month out of range").
fn why_not(t: &str) -> String {
    let candidates = [
        DateTime::parse_from_rfc3339(t).err(),
        NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M").err(),
        NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").err(),
        NaiveDate::parse_from_str(t, "%Y-%m-%d").err(),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|e| e.kind() == chrono::format::ParseErrorKind::OutOfRange)
        .map_or_else(String::new, |_| " (a field is out of range)".to_string())
}

#[cfg(test)]
mod tests {
    use chrono::FixedOffset;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid")
            .with_timezone(&Utc)
    }

    #[test]
    fn spans() {
        let now = at("2026-05-31T12:00:00Z");
        let back = |t: &str| parse_span(t).expect(t).before(now).expect("in range");
        assert_eq!(back("2h"), at("2026-05-31T10:00:00Z"));
        assert_eq!(back("90s"), at("2026-05-31T11:58:30Z"));
        assert_eq!(back("15m"), at("2026-05-31T11:45:00Z"));
        assert_eq!(back("7d"), at("2026-05-24T12:00:00Z"));
        assert_eq!(back("2w"), at("2026-05-17T12:00:00Z"));
        // Calendar months, clamped to the month's last day.
        assert_eq!(back("3mo"), at("2026-02-28T12:00:00Z"));
        assert_eq!(back("1y"), at("2025-05-31T12:00:00Z"));
        assert_eq!(back("2 hours"), at("2026-05-31T10:00:00Z"));
        assert_eq!(back("1MO"), at("2026-04-30T12:00:00Z"));
    }

    #[test]
    fn bad_spans_say_what_is_expected() {
        for (text, wanted) in [
            ("", "must start with a number"),
            ("h", "must start with a number"),
            ("-2h", "must start with a number"),
            ("2", "has no unit"),
            ("2x", "unknown unit `x`"),
            ("2.5h", "unknown unit `.5h`"),
            ("0d", "more than zero"),
            ("99999999999999999999d", "too large"),
            ("9999999999999999d", "too large"),
        ] {
            let e = parse_span(text).expect_err(text).to_string();
            assert!(e.contains(wanted), "{text}: {e}");
            if !wanted.contains("large") && !wanted.contains("zero") {
                assert!(e.contains("e.g. 30m, 2h, 7d, 3mo"), "{text}: {e}");
            }
        }
    }

    #[test]
    fn times() {
        let tz = FixedOffset::east_opt(2 * 3600).expect("offset");
        let p = |t: &str| parse_time(t, &tz).expect(t);
        assert_eq!(p("2026-05-01T14:00:00Z"), at("2026-05-01T14:00:00Z"));
        assert_eq!(p("2026-05-01T16:00:00+02:00"), at("2026-05-01T14:00:00Z"));
        assert_eq!(
            p("2026-05-01 16:00:00.5+02:00"),
            at("2026-05-01T14:00:00.5Z")
        );
        assert_eq!(p("2026-05-01 16:00"), at("2026-05-01T14:00:00Z"));
        assert_eq!(p("2026-05-01 16:00:30"), at("2026-05-01T14:00:30Z"));
        assert_eq!(p("2026-05-01T16:00"), at("2026-05-01T14:00:00Z"));
        assert_eq!(p(" 2026-05-01 "), at("2026-04-30T22:00:00Z"));
        assert_eq!(
            parse_time("2026-05-01 16:00", &Utc).expect("utc"),
            at("2026-05-01T16:00:00Z")
        );
    }

    #[test]
    fn bad_times_say_what_is_expected() {
        for (text, wanted) in [
            ("yesterday", "`yesterday` is not a time; expected RFC 3339"),
            ("2026-13-01 10:00", "(a field is out of range)"),
            ("2026-02-30", "(a field is out of range)"),
            ("2026-05-01 25:00", "(a field is out of range)"),
            ("2026-05-01 14", "is not a time"),
            ("14:00", "is not a time"),
            ("2026-05-01T14:00:00+25:00", "is not a time"),
        ] {
            let e = parse_time(text, &Utc).expect_err(text).to_string();
            assert!(e.contains(wanted), "{text}: {e}");
            assert!(e.contains("YYYY-MM-DD HH:MM"), "{text}: {e}");
        }
    }
}
