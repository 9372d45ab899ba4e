// Validates AsyncAPI documents with the official parser (@asyncapi/parser).
// Usage: node validate.mjs FILE...
// Exits non-zero if any document has an error-level diagnostic.
import { readFile } from 'node:fs/promises';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const text = await readFile(file, 'utf8');
  const { document, diagnostics } = await parser.parse(text, { source: file });
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of diagnostics) {
    const level = ['error', 'warning', 'info', 'hint'][d.severity] ?? 'diagnostic';
    console.log(`${file}: ${level}: ${d.message} at /${d.path.join('/')}`);
  }
  if (!document || errors.length > 0) {
    failed = true;
    console.log(`${file}: INVALID (${errors.length} errors)`);
  } else {
    const channels = document.channels().length;
    const messages = document.allMessages().length;
    console.log(`${file}: valid AsyncAPI ${document.version()} (${channels} channels, ${messages} messages)`);
  }
}
process.exit(failed ? 1 : 0);
