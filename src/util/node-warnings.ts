// Node 24 warns once per process that `url.parse()` is deprecated (DEP0169). docker-modem, dockerode's
// transport, calls it for every client; the warning then stands in every main and post log, where a
// user can do nothing about it. Every other warning still shows.
const URL_PARSE_DEPRECATION = 'DEP0169';

/** The code of a warning given as (warning, type, code) or as (warning, { code }). */
function warningCode(rest: unknown[]): unknown {
  const [typeOrOptions, code] = rest;
  return typeof typeOrOptions === 'object' && typeOrOptions !== null
    ? (typeOrOptions as { code?: unknown }).code
    : code;
}

export function silenceUrlParseDeprecation(target: Pick<NodeJS.Process, 'emitWarning'> = process): void {
  const emit = target.emitWarning.bind(target) as (...args: unknown[]) => void;
  target.emitWarning = (...args: unknown[]) => {
    if (warningCode(args.slice(1)) !== URL_PARSE_DEPRECATION) emit(...args);
  };
}
