#!/usr/bin/perl
# tools-check.pl: every external program the build, the scripts and the tests start must be listed in tools.txt
# (which `make setup` installs from), and every program listed there must be installed. `make lint` runs it.
#
#   perl tools-check.pl [--installed]
#
# It finds programs where they are started:
#   - Rust (init/ ctl/ config/ image/ demo/ tests/): `Command::new("X")`, and the program after `timeout N`,
#     `netns exec NS` and `-c`-less `sh`/`bash` wrappers in `.args([...])` lists of test helpers (`run("X", ...)`);
#   - shell: image/*.sh, kernel-config/*.sh, qemu/*.sh, tests/**/*.sh, .ci/run, and the Makefile's recipes (and
#     image/*.mk): the first word of every simple command (after `;`, `&&`, `||`, `|`, `$(`, `then`, `do`, ...).
# Shell builtins, functions a script defines, variables and the project's own programs are not external.
# A line (or the line above it) may carry `tools: not-a-program` to silence a false match; use it sparingly.
# With --installed, it also fails when a listed program is missing (after `make setup` nothing may be).
use strict;
use warnings;

my $installed = grep { $_ eq '--installed' } @ARGV;
my (%listed, %source, @problems);

open my $list, '<', 'tools.txt' or die "tools-check: tools.txt: $!\n";
while (<$list>) {
    s/#.*//;
    next unless /\S/;
    my ($cmd, $src) = split ' ';
    unless (defined $src && $src =~ /^(apt|pip|cargo|rustup|prereq):\S+$/) {
        push @problems, "tools.txt:$.: expected 'COMMAND SOURCE:PACKAGE' (source apt, pip, cargo, rustup, prereq)";
        next;
    }
    next if $cmd eq '-';    # a package with no program of its own (a library): installed, not checked here
    push @problems, "tools.txt:$.: '$cmd' is listed twice" if $listed{$cmd};
    $listed{$cmd} = 1;
    $source{$cmd} = $src;
}
close $list;

# Not external: the shell's own words and the project's own binaries.
my %shell = map { $_ => 1 } qw(
  . : [ [[ ! { } alias bg break builtin case cd command continue declare do done echo elif else esac eval exec exit
  export false fg fi for function getopts hash if in jobs kill let local printf pwd read readonly return select set
  shift source test then time trap true type typeset ulimit umask unalias unset until wait while mapfile readarray
);
my %ours = map { $_ => 1 } qw(keel-init keel-demo keelctl keel-testhelper keel-mkimage keel-bench keel-e2e);

my %found;    # program => "file:line"
my (%FUNCS, @UNITS);    # functions any script defines (fat.sh is sourced by others); command texts
sub found {
    my ($prog, $where) = @_;
    $prog =~ s{^.*/}{} if $prog =~ m{^/};    # an absolute path names its program
    return if $prog eq '' || $shell{$prog} || $ours{$prog};
    return unless $prog =~ /^[A-Za-z][A-Za-z0-9_.+-]*$/;
    $found{$prog} //= $where;
}

sub files_under {
    my ($dir, $re) = @_;
    return () unless -d $dir;
    my @out;
    my @todo = ($dir);
    while (my $d = shift @todo) {
        opendir my $dh, $d or next;
        for my $e (sort readdir $dh) {
            next if $e =~ /^\./ || $e eq 'target' || $e eq 'build';
            my $p = "$d/$e";
            if (-d $p) { push @todo, $p } elsif ($e =~ $re) { push @out, $p }
        }
    }
    return @out;
}

# ---- Rust -------------------------------------------------------------------------------------------------------
for my $f (map { files_under($_, qr/\.rs$/) } qw(init ctl config image demo tests fuzz)) {
    open my $fh, '<', $f or next;
    my $prev = '';
    while (my $line = <$fh>) {
        my $skip = ($line =~ /tools: not-a-program/ || $prev =~ /tools: not-a-program/);
        $prev = $line;
        next if $skip || $line =~ m{^\s*//};
        while ($line =~ /Command::new\("([^"]+)"\)/g) { found($1, "$f:$.") }
        # Test helpers that take the program as their first argument: run("sgdisk", &[...]).
        while ($line =~ /\brun\("([A-Za-z][A-Za-z0-9_.+-]*)",/g) { found($1, "$f:$.") }
        # Wrappers: ["30", "openssl", ...] after timeout; ["netns", "exec", NS, "dnsmasq", ...].
        while ($line =~ /"netns",\s*"exec",\s*[^,]+,\s*"([^"]+)"/g) { found($1, "$f:$.") }
        while ($line =~ /\.args\(\["\d+",\s*"([^"]+)"/g) { found($1, "$f:$.") }
    }
    close $fh;
}

# ---- shell ------------------------------------------------------------------------------------------------------
sub shell_commands {
    my ($text, $where) = @_;
    # The first word of each simple command; quoted strings without command substitutions are opaque.
    $text =~ s/\$\{[^}]*\}/\$V/g;    # parameter expansions
    $text =~ s/\$\(\((?:[^()]++|(\((?:[^()]++|(?-1))*\)))*\)\)/0/g;    # arithmetic
    $text =~ s/'[^'\n]*'/''/g;
    $text =~ s/"((?:[^"\\\n]|\\.)*)"/index($1, '$(') >= 0 ? " $1 " : q{''}/ge;
    $text =~ s/(^|\n|;;)[ \t]*\(?[^\s();|]+(?:\|[^\s();|]+)*\)/$1 /g;    # case labels
    $text =~ s/\)/ /g;    # the end of a substitution or a case label: what follows is no new command
    for my $seg (split /;;|&&|\|\||[;|&`]|\$\(|\(|\{|\}|\n/, $text) {
        my @w = split ' ', $seg;
        while (@w) {
            my $w = $w[0];
            if ($w =~ /^[A-Za-z_][A-Za-z0-9_]*=/ || $w =~ /^(then|do|else|elif|if|while|until|!|exec|time|command|env|xargs|nice|builtin)$/) {
                shift @w;
                next;
            }
            if ($w eq 'timeout') { shift @w; shift @w while @w && $w[0] =~ /^(-\S+|\d+[smh]?)$/; next }
            last;
        }
        next unless @w;
        my $w = $w[0];
        next if $w =~ /^[\$"'<>\[\d*-]/ || $w =~ /^(for|case|in|esac|done|fi|function|select|return|local)$/;
        next if $w =~ m{^[^/]+/} && $w !~ m{^/};    # a relative path: the project's own script
        next if $FUNCS{$w};
        found($w, $where);
    }
}

sub scan_shell_file {
    my ($f, $is_make) = @_;
    open my $fh, '<', $f or return;
    my @lines = <$fh>;
    close $fh;
    my @units;
    my ($heredoc, $unit, $start) = (undef, '', 0);
    for my $i (0 .. $#lines) {
        my $l = $lines[$i];
        if (defined $heredoc) { $heredoc = undef if $l =~ /^\t*\Q$heredoc\E\s*$/; next }
        if ($is_make) {
            # Recipes only (a tab first); make's variables and $$ become the shell's.
            if ($unit eq '' && $l !~ /^\t/) { next }
            $l =~ s/^\t[@+-]*//;
            $l =~ s/(?<!\$)\$\([A-Za-z_][A-Za-z0-9_]*\)/\$MAKEVAR/g;
            $l =~ s/(?<!\$)\$\([a-z]+ [^)]*\)/\$MAKEVAR/g;    # make functions: $(call ...), $(abspath ...)
            $l =~ s/\$\$/\$/g;
        }
        next if $l =~ /^\s*#/;
        next if $l =~ /tools: not-a-program/ || ($i > 0 && $lines[$i - 1] =~ /tools: not-a-program/);
        $l =~ s/(^|\s)#.*$//;
        $FUNCS{$1} = 1 if $l =~ /^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)/;
        $heredoc = $1 if $l =~ /<<-?\s*['"]?([A-Za-z_]+)['"]?/;
        $start = $i + 1 if $unit eq '';
        if ($l =~ s/\\\n$/ /) { $unit .= $l; next }
        $unit .= $l;
        push @units, [$unit, "$f:$start"];
        $unit = '';
    }
    push @units, [$unit, "$f:$start"] if $unit ne '';
    push @UNITS, @units;
}

my @shell_files = (
    (map { files_under($_, qr/\.sh$/) } qw(image kernel-config qemu tests)),
    grep { -f } ('.ci/run'),
);
scan_shell_file($_, 0) for @shell_files;
scan_shell_file($_, 1) for ('Makefile', files_under('image', qr/\.mk$/));
shell_commands(@$_) for @UNITS;

# ---- verdict ----------------------------------------------------------------------------------------------------
for my $prog (sort keys %found) {
    next if $listed{$prog};
    my $hint = '';
    if (my $path = `command -v -- \Q$prog\E 2>/dev/null`) {
        chomp $path;
        my $pkg = `dpkg -S \Q$path\E 2>/dev/null` || `dpkg -S \Q/usr$path\E 2>/dev/null`;
        $hint = $pkg =~ /^([^:]+):/ ? " (here it comes from apt:$1)" : '';
    }
    push @problems, "$found{$prog}: starts '$prog', which tools.txt does not list$hint: add '$prog apt:PACKAGE' so `make setup` installs it on a fresh machine";
}
if ($installed) {
    for my $prog (sort keys %listed) {
        next if $source{$prog} =~ /^prereq:/;
        system("command -v -- \Q$prog\E >/dev/null 2>&1") == 0
          or push @problems, "tools.txt: '$prog' ($source{$prog}) is not installed: run `make setup`";
    }
}
if (@problems) {
    print STDERR "tools: $_\n" for @problems;
    exit 1;
}
printf "tools: %d programs listed, %d started by the build and tests, all listed%s\n", scalar(keys %listed),
  scalar(keys %found), $installed ? ' and installed' : '';
