// Kit mode (?kit=URL): runs a conformance kit's cases through this page's pipeline and shows
// pass/fail per stage. Filled in against the kit schema.
export async function runKit(pipe, url, panel) {
  panel.textContent = `kit mode: no kit support in this build (${url})`;
  return { ok: false, error: 'kit mode not available' };
}
