//! stox-mappings: persistent gateway state.
