//! Placeholder: being written (see the issue tracker).
