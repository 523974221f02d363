// Compares one `conformance server -o DIR` run with baseline.json (used by ./run).
//
//   node compare.mjs --results DIR --log SUITE_LOG --baseline baseline.json [--bare-names]
//
// A scenario fails when any of its checks has status FAILURE (WARNING and INFO do not fail it,
// as in the suite's own summary). Prints one line per scenario, the problems, and last the line
//   conformance: P passed, E expected failures (baseline), U unexpected
// Exit status 1 when U > 0: a scenario outside the baseline failed, a baseline scenario passed,
// or a baseline scenario was not run at all.
import fs from 'node:fs';
import path from 'node:path';

const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(name);
  if (i < 0 || i + 1 >= argv.length) throw new Error(`missing ${name}`);
  return argv[i + 1];
};
const resultsDir = opt('--results');
const suiteLog = fs.readFileSync(opt('--log'), 'utf8');
const baselineFile = JSON.parse(fs.readFileSync(opt('--baseline'), 'utf8'));
const bareNames = argv.includes('--bare-names');

const expected = new Map(Object.entries(baselineFile.expected_failures ?? {}));
if (bareNames) for (const [k, v] of Object.entries(baselineFile.expected_failures_bare_names ?? {})) expected.set(k, v);

// Scenarios the suite ran, in order (it announces each one).
const ran = [...suiteLog.matchAll(/^=== Running scenario: (\S+) ===$/gm)].map((m) => m[1]);
if (ran.length === 0) {
  console.log('conformance: the suite ran no scenarios (see its log above)');
  process.exit(1);
}

// Result folders are `server-<scenario>-<ISO timestamp with - for : and .>`.
const checksByScenario = new Map();
for (const entry of fs.readdirSync(resultsDir)) {
  const m = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(entry);
  const file = path.join(resultsDir, entry, 'checks.json');
  if (m && fs.existsSync(file)) checksByScenario.set(m[1], JSON.parse(fs.readFileSync(file, 'utf8')));
}

let passed = 0;
let expectedFailures = 0;
const problems = [];
const lines = [];
for (const scenario of ran) {
  const checks = checksByScenario.get(scenario);
  const failures = checks
    ? checks.filter((c) => c.status === 'FAILURE')
    : [{ name: scenario, errorMessage: 'the scenario crashed before writing checks.json (see the suite log)' }];
  const why = failures.map((c) => `${c.name}: ${c.errorMessage ?? c.description ?? 'failed'}`).join('; ');
  if (failures.length === 0) {
    if (expected.has(scenario)) {
      problems.push(`NOW PASSES (remove it from baseline.json): ${scenario} (baseline said: ${expected.get(scenario)})`);
      lines.push(`  pass   ${scenario}   <- listed in baseline.json`);
    } else {
      passed++;
      lines.push(`  pass   ${scenario}`);
    }
  } else if (expected.has(scenario)) {
    expectedFailures++;
    lines.push(`  xfail  ${scenario}   (${expected.get(scenario)})`);
  } else {
    problems.push(`UNEXPECTED FAILURE: ${scenario}: ${why}`);
    lines.push(`  FAIL   ${scenario}   ${why}`);
  }
}
for (const scenario of expected.keys()) {
  if (!ran.includes(scenario)) problems.push(`NOT RUN (stale baseline entry, remove it): ${scenario}`);
}

console.log(`\nconformance scenarios (${bareNames ? 'bare tool names' : 'tool names mapped to <target>___<tool>'}):`);
for (const l of lines) console.log(l);
for (const p of problems) console.log(p);
console.log(`conformance: ${passed} passed, ${expectedFailures} expected failures (baseline), ${problems.length} unexpected`);
process.exit(problems.length > 0 ? 1 : 0);
