//! Pagination: take/skip as the TypeScript module does, and keyset for deep pages.

use infra_core::{Error, Result};

/// The largest page a caller may ask for.
pub const MAX_TAKE: i64 = 1000;

/// Offset pagination (`take`/`skip`, Prisma's names). Simple; cost grows with `skip`, so
/// prefer [`Keyset`] beyond the first pages.
///
/// ```
/// use infra_db::Page;
/// let page = Page::new(20, 40).unwrap();
/// assert_eq!((page.limit(), page.offset()), (20, 40));
/// assert!(Page::new(0, 0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    take: i64,
    skip: i64,
}

impl Page {
    /// `take` rows (1..=1000) after skipping `skip` (≥ 0).
    pub fn new(take: i64, skip: i64) -> Result<Self> {
        check_take(take)?;
        if skip < 0 {
            return Err(Error::invalid_input("skip", "must not be negative"));
        }
        Ok(Page { take, skip })
    }

    /// For `.limit()`.
    pub fn limit(&self) -> i64 {
        self.take
    }

    /// For `.offset()`.
    pub fn offset(&self) -> i64 {
        self.skip
    }
}

/// Keyset pagination over an increasing key (an id): each page starts after the last key of
/// the previous one, so deep pages cost what the first does (with an index on the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    after: Option<i64>,
    take: i64,
}

impl Keyset {
    /// The first page of `take` rows.
    pub fn first(take: i64) -> Result<Self> {
        check_take(take)?;
        Ok(Keyset { after: None, take })
    }

    /// The page after key `after`.
    pub fn after(after: i64, take: i64) -> Result<Self> {
        check_take(take)?;
        Ok(Keyset {
            after: Some(after),
            take,
        })
    }

    /// Rows must have a key greater than this (`i64::MIN` on the first page).
    pub fn after_key(&self) -> i64 {
        self.after.unwrap_or(i64::MIN)
    }

    /// For `.limit()`: one more than asked, to tell whether a next page exists.
    pub fn limit(&self) -> i64 {
        self.take + 1
    }

    /// Trims the extra row and returns the next page, if any.
    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> i64) -> (Vec<T>, Option<Keyset>) {
        let more = rows.len() as i64 > self.take;
        rows.truncate(self.take as usize);
        let next = if more {
            rows.last().map(|r| Keyset {
                after: Some(key(r)),
                take: self.take,
            })
        } else {
            None
        };
        (rows, next)
    }
}

fn check_take(take: i64) -> Result<()> {
    if !(1..=MAX_TAKE).contains(&take) {
        return Err(Error::invalid_input(
            "take",
            format_args!("must be between 1 and {MAX_TAKE}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_the_field() {
        assert_eq!(Page::new(1001, 0).unwrap_err().field(), Some("take"));
        assert_eq!(Page::new(10, -1).unwrap_err().field(), Some("skip"));
        assert_eq!(Keyset::first(0).unwrap_err().field(), Some("take"));
    }

    #[test]
    fn keyset_detects_the_next_page() {
        let k = Keyset::first(2).unwrap();
        let (rows, next) = k.finish(vec![1, 2, 3], |r| *r);
        assert_eq!(rows, [1, 2]);
        assert_eq!(next.unwrap().after_key(), 2);
        let (rows, next) = k.finish(vec![7], |r| *r);
        assert_eq!((rows, next), (vec![7], None));
    }
}
