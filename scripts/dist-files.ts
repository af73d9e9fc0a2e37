// Files ncc copies beside a bundle because some bundled module names them, which nothing loads on a
// Linux runner: the build drops them. test/unit/dist.test.ts fails when dist/ holds a file it does not
// allow, so a file a dependency update brings is either added here (with why) or allowed there.

/** A path relative to the bundle's directory (dist/main, dist/post) and why nothing loads it. */
export interface Dropped {
  path: RegExp;
  why: string;
}

export const DROPPED: readonly Dropped[] = [
  {
    path: /^auth\.proto$/,
    why: 'dockerode\'s BuildKit session, for buildImage with version "2", which the action never calls'
  },
  {
    path: /^buildkit_status\.proto$/,
    why: "dockerode's BuildKit progress decoder (Docker#followProgress); the action uses docker.modem.followProgress"
  }
];
