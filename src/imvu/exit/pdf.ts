// A monthly statement as a PDF: plain text lines in Helvetica, one or more A4 pages. The CSV beside
// it is the machine-readable form; the PDF is for people and accountants, and is rendered from the
// same statement, so the two cannot disagree. Text is restricted to printable ASCII (amounts,
// metric names, identifiers), so no font embedding or encoding table is needed.

const LINES_PER_PAGE = 60;

function escapeText(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').replace(/([\\()])/g, '\\$1');
}

/** A PDF 1.4 document showing `lines`, one text line each (RFC-free, ISO 32000-1 subset). */
export function textPdf(title: string, lines: string[]): Buffer {
  const pages: string[][] = [];
  for (let i = 0; i < Math.max(lines.length, 1); i += LINES_PER_PAGE) pages.push(lines.slice(i, i + LINES_PER_PAGE));
  const objects: string[] = [];
  // 1: catalog, 2: pages, 3: font; then per page: page object and its content stream.
  const kids = pages.map((_, i) => `${4 + i * 2} 0 R`).join(' ');
  objects.push('<< /Type /Catalog /Pages 2 0 R >>');
  objects.push(`<< /Type /Pages /Kids [${kids}] /Count ${pages.length} >>`);
  objects.push('<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>');
  pages.forEach((page, i) => {
    const ops = ['BT', '/F1 10 Tf', '12 TL', '50 800 Td'];
    if (i === 0) ops.push(`/F1 14 Tf (${escapeText(title)}) Tj T* T* /F1 10 Tf`);
    for (const line of page) ops.push(`(${escapeText(line)}) Tj T*`);
    ops.push('ET');
    const stream = ops.join('\n');
    objects.push(`<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents ${5 + i * 2} 0 R >>`);
    objects.push(`<< /Length ${Buffer.byteLength(stream, 'latin1')} >>\nstream\n${stream}\nendstream`);
  });
  let out = '%PDF-1.4\n';
  const offsets: number[] = [];
  objects.forEach((o, i) => {
    offsets.push(Buffer.byteLength(out, 'latin1'));
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, 'latin1');
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}
