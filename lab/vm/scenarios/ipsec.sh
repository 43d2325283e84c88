#!/bin/sh
# In-VM scenario of the kernel IPsec acceptance test (issue 4): runs the Rust driver, whose
# exit status decides the VM's PASS/FAIL line. Extra evidence from the kernel afterwards.
/payload/vm-ipsec
rc=$?
echo "VMTEST INFO xfrm-stats $(tr -s ' \n' ' ' </proc/net/xfrm_stat 2>/dev/null | head -c 600)"
exit $rc
