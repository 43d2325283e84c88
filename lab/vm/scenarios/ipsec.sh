#!/bin/sh
# In-VM scenario of the kernel IPsec acceptance test (issue 4): runs the Rust driver, whose
# exit status decides the VM's PASS/FAIL line. driver.args holds optional arguments (used
# when the driver is a subcommand of a bigger binary).
# shellcheck disable=SC2046 # the arguments are meant to split
exec /payload/vm-ipsec $(cat /payload/driver.args 2>/dev/null)
