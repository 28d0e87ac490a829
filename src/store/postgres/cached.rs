//! The hot path's statements, prepared on the connection at their second use: a
//! long-lived writer (`stream`, the policy service) then sends each login's statements
//! as bind + execute, without the server parsing and planning them again, while a
//! one-shot `record`, which runs each once, pays no extra round trip to prepare.

use std::collections::HashMap;

use postgres::types::{ToSql, Type};
use postgres::{GenericClient, Row, Statement};

use super::error::{PgError, R};

/// Typed parameters, as `query_typed` takes them.
pub(super) type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

/// What this connection has run: None, run once unprepared; Some, prepared. A
/// statement lives as long as its session, whatever its transactions do.
#[derive(Default)]
pub(super) struct Statements {
    seen: HashMap<&'static str, Option<Statement>>,
}

/// A client (or transaction) with its connection's statements.
pub(super) struct Cached<'a, C> {
    pub c: &'a mut C,
    pub stmts: &'a mut Statements,
}

impl<C: GenericClient> Cached<'_, C> {
    pub fn query(&mut self, sql: &'static str, params: &Params) -> R<Vec<Row>> {
        let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
        let stmt = match self.stmts.seen.get(sql) {
            Some(Some(stmt)) => stmt.clone(),
            Some(None) => {
                let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
                let stmt = self.c.prepare_typed(sql, &types)?;
                self.stmts.seen.insert(sql, Some(stmt.clone()));
                stmt
            }
            None => {
                self.stmts.seen.insert(sql, None);
                return Ok(self.c.query_typed(sql, params)?);
            }
        };
        Ok(self.c.query(&stmt, &values)?)
    }

    pub fn query_opt(&mut self, sql: &'static str, params: &Params) -> R<Option<Row>> {
        let mut rows = self.query(sql, params)?;
        if rows.len() > 1 {
            return Err(PgError::Bad(format!(
                "{} rows where at most one was expected",
                rows.len()
            )));
        }
        Ok(rows.pop())
    }

    pub fn query_one(&mut self, sql: &'static str, params: &Params) -> R<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| PgError::Bad("no row where one was expected".into()))
    }

    /// A statement whose rows (if any) are not read.
    pub fn execute(&mut self, sql: &'static str, params: &Params) -> R<()> {
        self.query(sql, params).map(drop)
    }
}
