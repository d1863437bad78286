//! XEP-0114: the component link, reconnecting with capped exponential backoff.
