#!/bin/sh
# In-VM scenario of the kernel IPsec acceptance test (issue 4): runs the Rust driver, whose
# exit status decides the VM's PASS/FAIL line, and keeps its output and capture files in /out
# (handed back to the host by /init). driver.args holds optional arguments (used when the
# driver is a subcommand of a bigger binary).
# shellcheck disable=SC2046 # the arguments are meant to split
{ /payload/vm-ipsec $(cat /payload/driver.args 2>/dev/null) --out /out; echo $? >/tmp/driver.rc; } 2>&1 \
    | tee /out/vmtest.log
exit "$(cat /tmp/driver.rc)"
