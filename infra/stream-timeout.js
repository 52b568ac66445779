// The streaming functions' timeout, derived from their window (serverless.yml reads it as
// ${file(infra/stream-timeout.js):seconds}): the window plus a margin for the response's
// start and end, so Lambda never stops a stream before it ends its window itself with
// `timeout`. Lambda runs a function for at most 900 s, so the window can be at most 870 s;
// a longer one, or one that is not a positive number, stops the packaging here.
"use strict";

const LAMBDA_LIMIT = 900;
const MARGIN = 30;

module.exports.seconds = async ({ resolveVariable }) => {
  const raw = await resolveVariable("param:streamWindowSeconds");
  const window = Number(raw);
  if (!Number.isFinite(window) || window <= 0) {
    throw new Error(`streamWindowSeconds must be a positive number of seconds, not ${raw}`);
  }
  if (window + MARGIN > LAMBDA_LIMIT) {
    throw new Error(
      `streamWindowSeconds=${raw} is too long: a streaming function's timeout is the window ` +
        `plus ${MARGIN} s, and Lambda allows at most ${LAMBDA_LIMIT} s ` +
        `(so the window is at most ${LAMBDA_LIMIT - MARGIN} s)`,
    );
  }
  return Math.ceil(window) + MARGIN;
};
