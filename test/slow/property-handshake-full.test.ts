// The handshake properties of test/property-handshake.test.ts at full size:
// 10,000 cases per property through the real guard (the fast suite runs 2,000),
// 200 real socket.io-client handshakes, the same fixed seed. FC_RUNS,
// FC_E2E_RUNS and FC_SEED still override.
process.env.FC_RUNS ??= '10000'
// Required, not imported: an import would be hoisted above the line that sets FC_RUNS.
require('../property-handshake.test')
