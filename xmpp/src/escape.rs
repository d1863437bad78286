//! XEP-0106: JID escaping.
