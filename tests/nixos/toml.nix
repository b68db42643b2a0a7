# A small TOML writer for the evaluation harness's `pkgs.formats.toml`. nixpkgs converts
# settings to JSON and then to TOML with remarshal; this writes the same TOML directly:
# tables, arrays of tables, strings (JSON escapes are valid TOML escapes), integers,
# floats, booleans, arrays; paths and derivations as their store paths. Like remarshal, it
# refuses null, which TOML cannot express.
{ lib }:
let
  inherit (builtins)
    attrNames
    concatStringsSep
    filter
    isAttrs
    isBool
    isFloat
    isInt
    isList
    isPath
    isString
    match
    toJSON
    ;
  concatMap' = f: l: lib.concatStrings (map f l);

  key = k: if match "[A-Za-z0-9_-]+" k != null then k else toJSON k;
  isTable = v: isAttrs v && !(lib.isDerivation v);
  isTableArray = v: isList v && v != [ ] && lib.all isTable v;

  value =
    where: v:
    if v == null then
      throw "TOML has no null (at ${where}): leave the setting out instead"
    else if isBool v then
      (if v then "true" else "false")
    else if isInt v || isFloat v then
      toString v
    else if isString v then
      toJSON v
    else if isPath v || lib.isDerivation v then
      toJSON "${v}"
    else if isList v then
      "[" + concatStringsSep ", " (lib.imap0 (i: x: value "${where}[${toString i}]" x) v) + "]"
    else if isAttrs v then
      "{ "
      + concatStringsSep ", " (lib.mapAttrsToList (k: x: "${key k} = ${value "${where}.${k}" x}") v)
      + " }"
    else
      throw "${where} cannot be written as TOML";

  table =
    path: attrs:
    let
      names = attrNames attrs;
      sub = n: path ++ [ n ];
      where = n: concatStringsSep "." (sub n);
      tables = filter (n: isTable attrs.${n}) names;
      arrays = filter (n: isTableArray attrs.${n}) names;
      simple = filter (n: !(isTable attrs.${n}) && !(isTableArray attrs.${n})) names;
    in
    # Plain keys first: after a [table] header, keys belong to that table.
    concatMap' (n: "${key n} = ${value (where n) attrs.${n}}\n") simple
    + concatMap' (n: "\n[${concatStringsSep "." (map key (sub n))}]\n" + table (sub n) attrs.${n}) tables
    + concatMap' (
      n:
      concatMap' (t: "\n[[${concatStringsSep "." (map key (sub n))}]]\n" + table (sub n) t) attrs.${n}
    ) arrays;
in
attrs: table [ ] attrs
