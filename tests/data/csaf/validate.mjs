// Runs the CSAF 2.0 strict schema test and every mandatory test (section 6.1) of @secvisogram/csaf-validator-lib on
// the JSON document given on standard input; prints {"isValid", "tests": [{name, isValid, errors}]}.
import validateStrict from '@secvisogram/csaf-validator-lib/validateStrict.js'
import * as mandatory from '@secvisogram/csaf-validator-lib/mandatoryTests.js'
import { csaf_2_0_strict } from '@secvisogram/csaf-validator-lib/schemaTests.js'

let input = ''
for await (const chunk of process.stdin) input += chunk
const result = await validateStrict([csaf_2_0_strict, ...Object.values(mandatory)], JSON.parse(input))
process.stdout.write(JSON.stringify(result))
