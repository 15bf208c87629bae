//! Resource groups (`Microsoft.Resources/resourceGroups`).

use serde_json::{Map, Value};

use super::error::ArmError;
use super::kinds::{Hooks, PutCtx};

/// Resource groups: synchronous PUT, asynchronous DELETE removing everything inside.
pub struct ResourceGroupHooks;

impl Hooks for ResourceGroupHooks {
    fn put(&self, ctx: &mut PutCtx<'_>) -> Result<(), ArmError> {
        if let Value::Object(map) = &mut ctx.body {
            let props = map
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            if !props.is_object() {
                return Err(ArmError::invalid(
                    "properties",
                    "properties must be an object.",
                ));
            }
        }
        Ok(())
    }
}
