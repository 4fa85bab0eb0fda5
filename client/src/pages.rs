//! [`Pages`]: a `SELECT`'s rows a page at a time, each page asked for with
//! where the one before ended ([`Rows::paging_state`]), as the Cassandra
//! drivers page; memory stays one page whatever the partition's size.

use ringdb_proto::{Query, QueryResult, Rows};

use crate::{Client, ClientError};

/// Rows per page when the query does not say ([`Query::page_size`]): the
/// Cassandra drivers' default.
pub const DEFAULT_PAGE_SIZE: u32 = 5000;

/// The pages of one `SELECT` (see [`Client::pages`]).
pub struct Pages<'a> {
    client: &'a Client,
    query: Query,
    done: bool,
}

impl Client {
    /// The rows of a `SELECT` (of the partitions its `WHERE` names:
    /// ringdb does not scan a whole table), a page at a time:
    ///
    /// ```no_run
    /// # async fn f(client: &ringdb_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use ringdb_client::{ConsistencyLevel, Query};
    /// let mut pages = client.pages(Query::new(
    ///     "SELECT name, age FROM shop.users WHERE team = 'red'",
    ///     ConsistencyLevel::One,
    /// ));
    /// while let Some(page) = pages.next_page().await? {
    ///     for user in page.typed::<(String, Option<i32>)>() {
    ///         let (name, age) = user?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// Each page is read at the query's level, from where the last one
    /// ended: rows written meanwhile ahead of that point appear, as with
    /// Cassandra's paging.
    pub fn pages(&self, mut query: Query) -> Pages<'_> {
        query.page_size.get_or_insert(DEFAULT_PAGE_SIZE);
        Pages {
            client: self,
            query,
            done: false,
        }
    }
}

impl Pages<'_> {
    /// The next page, or `None` after the last. A page that failed may be
    /// asked for again. A statement given as text that is not a `SELECT`
    /// is refused before it is sent; a prepared one that returns no rows
    /// ran, and is an error here.
    ///
    /// A row with siblings comes once per version, as `ringdb shell`
    /// shows it ([`Rows::siblings`] says which).
    pub async fn next_page(&mut self) -> Result<Option<Rows>, ClientError> {
        if self.done {
            return Ok(None);
        }
        let first_word: String = (self.query.cql.trim_start().chars())
            .take_while(char::is_ascii_alphabetic)
            .collect();
        let select = first_word.eq_ignore_ascii_case("select");
        if !select && self.query.prepared.is_none() {
            self.done = true;
            return Err(ClientError::Config(format!(
                "only a SELECT has pages of rows, not {:?}",
                self.query.cql
            )));
        }
        let QueryResult::Rows(rows) = self.client.query(self.query.clone()).await? else {
            self.done = true;
            return Err(ClientError::Config(
                "the statement returned no rows to page through".into(),
            ));
        };
        match &rows.paging_state {
            Some(state) => self.query.paging_state = Some(state.clone()),
            None => self.done = true,
        }
        Ok(Some(rows))
    }
}
