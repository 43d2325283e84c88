//! `testkit`: shared test fixtures; under construction.
