//! XEP-0030 / XEP-0100 / XEP-0199 answers of the component.
